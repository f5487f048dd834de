"""Reference transferability scores for tests/rank.rs, written in NumPy from the papers' equations.

LogME (You et al., ICML 2021, Algorithm 1 and Eq. 2): Bayesian linear regression y ~ N(Fw, 1/beta),
w ~ N(0, I/alpha). alpha and beta come from MacKay's fixed-point updates, computed on a thin SVD
of F itself (np.linalg.svd, not a Gram matrix), iterated to convergence:
    gamma = sum_i beta s_i^2 / (alpha + beta s_i^2)
    alpha = gamma / m'm,   beta = (n - gamma) / ||F m - y||^2
and the evidence at the final alpha, beta is evaluated from the matrices of Eq. 2 directly:
    L = D/2 log alpha + n/2 log beta - n/2 log 2pi - beta/2 ||F m - y||^2 - alpha/2 m'm
        - 1/2 log |A|,   A = alpha I + beta F'F,   m = beta A^-1 F'y
(slogdet and solve on the D x D matrix: every one of the D eigenvalues of A is in log|A|).
Divided by n, averaged over the one-hot columns of the labels (or the regression targets).

LEEP (Nguyen et al., ICML 2020, Eqs. 1-2) and NCE (Tran et al., ICCV 2019): from the source
head's softmax, resp. its argmax.

usage: rank_reference.py DIR   (reads every DIR/case_*/: features.npy, labels.npy, classes.txt and
optionally targets.npy, logits.npy; writes DIR/reference.json)
"""
import glob
import json
import os
import sys

import numpy as np


def evidence(f, y):
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s ** 2
    x = u.T @ y
    outside = y @ y - x @ x
    alpha, beta = 1.0, 1.0
    for _ in range(100):
        t = alpha / beta
        gamma = np.sum(sigma / (sigma + t))
        m2 = np.sum(sigma * x ** 2 / (sigma + t) ** 2)
        res2 = np.sum(x ** 2 * (t / (sigma + t)) ** 2) + outside
        alpha, beta = gamma / m2, (n - gamma) / res2
        if abs(alpha / beta - t) <= 1e-10 * t:
            break
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    sign, logdet = np.linalg.slogdet(a)
    assert sign > 0
    r = f @ m - y
    ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi)
          - beta / 2 * (r @ r) - alpha / 2 * (m @ m) - logdet / 2)
    return ev / n


def logme(f, labels, classes):
    f = f.astype(np.float64)
    return float(np.mean([evidence(f, (labels == c).astype(np.float64)) for c in range(classes)]))


def logme_regression(f, targets):
    f = f.astype(np.float64)
    t = targets.astype(np.float64)
    return float(np.mean([evidence(f, t[:, j]) for j in range(t.shape[1])]))


def softmax(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def leep(logits, labels, classes):
    theta = softmax(logits)
    n = len(labels)
    onehot = np.eye(classes)[labels]
    joint = onehot.T @ theta / n  # P(y, z)
    cond = joint / joint.sum(axis=0, keepdims=True)  # P(y | z)
    eep = np.sum(theta * cond[labels], axis=1)
    return float(np.mean(np.log(eep)))


def nce(logits, labels, classes):
    z = np.argmax(logits.astype(np.float64), axis=1)
    n = len(labels)
    joint = np.zeros((classes, logits.shape[1]))
    np.add.at(joint, (labels, z), 1.0)
    joint /= n
    pz = joint.sum(axis=0)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log((joint / pz)[nz])))


out = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "case_*"))):
    def arr(name):
        p = os.path.join(path, name + ".npy")
        return np.load(p) if os.path.exists(p) else None
    name = os.path.basename(path)
    f, labels = arr("features"), arr("labels").astype(np.int64)
    with open(os.path.join(path, "classes.txt")) as fh:
        classes = int(fh.read())
    res = {"logme": logme(f, labels, classes)}
    targets, logits = arr("targets"), arr("logits")
    if targets is not None:
        res["logme_regression"] = logme_regression(f, targets)
    if logits is not None:
        res["leep"] = leep(logits, labels, classes)
        res["nce"] = nce(logits, labels, classes)
    out[name] = res
with open(os.path.join(sys.argv[1], "reference.json"), "w") as fh:
    json.dump(out, fh, indent=1)
