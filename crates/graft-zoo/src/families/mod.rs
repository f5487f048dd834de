//! The model families, one file each.

pub mod bert;
pub mod convnext;
pub mod efficientnet;
pub mod mobilenetv3;
pub mod resnet;
pub mod vit;
