//! CLIP's tokenizer built from the merges graft ships: open_clip's ids (read off
//! `open_clip.tokenize` in the venv; tests/clip.rs compares whole texts against it live).

use graft_text::Tokenizer;

#[test]
fn clip_tokenizer_gives_open_clips_ids() {
    let tok = Tokenizer::clip(77).expect("CLIP tokenizer");
    // open_clip.tokenize(["a photo of a dog."])[0][:8]
    assert_eq!(
        tok.ids("a photo of a dog.").expect("ids"),
        vec![49406, 320, 1125, 539, 320, 1929, 269, 49407]
    );
    // lower case and whitespace runs as open_clip's cleaning leaves them
    assert_eq!(
        tok.ids("A   Photo\tof a DOG.").expect("ids"),
        tok.ids("a photo of a dog.").expect("ids")
    );
    // truncated to the context, the end-of-text token kept last
    let long = tok.ids(&"word ".repeat(200)).expect("ids");
    assert_eq!(long.len(), 77);
    assert_eq!((long[0], long[76]), (49406, 49407));
    assert_eq!(tok.pad_id(), 0);
    assert!(Tokenizer::clip(1).is_err());
}
