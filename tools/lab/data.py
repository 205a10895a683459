"""The shapes cache encoded with a trained hybrid tokenizer, once, for generator training, and
the object tokens of each image (library; `tools/py lab.encode_dataset` encodes ahead of training).

Per image it stores what teacher-forced training needs (docs/hart.md §11.2, §13):
  - `indices` int16 [N, Σ pn_k²]: the multi-scale token maps, scale after scale, row-major;
  - `residual` float16 [N, h², Cv]: the continuous residual f − f_hat_discrete of the last
    scale (the residual diffusion head's target, in latent units), row-major tokens;
  - `captions`: the caption of each image.
The scale inputs (Down_area of f_hat) are rebuilt from the indices during training: that costs
little next to the transformer and keeps the file small.
"""
import hashlib
import os
import time

import numpy as np

# Threads sleep instead of spinning while they wait: on this shared 2-core box spinning threads
# steal the cores other jobs (and our own second thread) need. Read when torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch

from hart.vae import HybridTokenizer, load_tokenizer
from lab.train_utils import autocast_bf16, resolve_device


ENCODING_MODULES = ("encoder.", "quant_conv.", "quantize.")


# ----------------------------------------------------------------------------------------
# Where the objects are: the shapes world is painted from an exact palette, so each image's
# object pixels (and hence the token cells over an object) come free with the image.


def object_mask(image: np.ndarray) -> np.ndarray:
    """[H, W] bool: the pixels that are not the background's colour (by the checker's segmentation)."""
    from lab.shapes.checker import segment
    seg = segment(image)
    return seg != np.bincount(seg.ravel()).argmax()


def object_cells(mask: np.ndarray, pn: int) -> np.ndarray:
    """[pn²] bool: token cells of a pn×pn grid that hold at least 5% object pixels of `mask`."""
    share = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(mask.astype(np.float32))[None], pn)
    return (share > 0.05).reshape(-1).numpy()


def object_tokens(images: np.ndarray, patch_nums) -> np.ndarray:
    """bool [N, Σ pn_k²], laid out like `indices`: which tokens of each scale cover an object."""
    out = np.zeros((len(images), sum(pn * pn for pn in patch_nums)), dtype=bool)
    for i, image in enumerate(images):
        mask = object_mask(image)
        out[i] = np.concatenate([object_cells(mask, pn) for pn in patch_nums])
    return out


def _mark_rows(data_dir: str, patch_nums, first: int, stop: int) -> np.ndarray:
    """object_tokens() of rows [first, stop) of a cache, in a worker process of mark_cache."""
    from lab.shapes.dataset import load_cache
    torch.set_num_threads(1)   # one process per core already
    return object_tokens(load_cache(data_dir)[0][first:stop], patch_nums)


def mark_cache(data_dir: str, patch_nums, n: int, workers: int = 1) -> np.ndarray:
    """object_tokens() of the first n images of a cache, in `workers` processes when > 1."""
    from lab.shapes.dataset import load_cache, map_row_shares
    if workers <= 1 or n <= 1:
        return object_tokens(load_cache(data_dir)[0][:n], patch_nums)
    return np.concatenate(map_row_shares(_mark_rows, n, workers, data_dir, list(patch_nums)))


def tokenizer_fingerprint(tokenizer: HybridTokenizer) -> str:
    """A short hash of the weights the encoding depends on (encoder, quant_conv, quantizer):
    an encoding made with other weights is stale. The decoder is left out, so training the
    decoder further (stage 2) keeps the encoded cache and the generator trained on it valid."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tokenizer.state_dict().items()):
        if not name.startswith(ENCODING_MODULES):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def encode_images(tokenizer: HybridTokenizer, images_uint8: np.ndarray, bf16: bool = True):
    """uint8 [B, H, W, 3] → (indices int64 [B, Σ pn²], residual float32 [B, h², Cv]), on the
    tokenizer's device.

    The encoder runs under bf16 autocast (several times faster here); the quantization, which
    defines the targets, runs in fp32 on its output.
    """
    device = next(tokenizer.parameters()).device
    x = torch.from_numpy(np.array(images_uint8)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with autocast_bf16(bf16, device.type):
        f = tokenizer.encode_continuous(x)
    f = f.float()
    idx_list, _, residual = tokenizer.quantize.encode_indices(f)
    indices = torch.cat([idx.reshape(idx.shape[0], -1) for idx in idx_list], dim=1)
    return indices, residual.flatten(2).transpose(1, 2)


def encode_cache(tokenizer: HybridTokenizer, images: np.ndarray, batch: int = 32, log=print) -> dict:
    n = images.shape[0]
    q = tokenizer.quantizer_config
    total = sum(pn * pn for pn in q.patch_nums)
    side = q.patch_nums[-1]
    indices = np.zeros((n, total), dtype=np.int16)
    residual = np.zeros((n, side * side, q.channels), dtype=np.float16)
    t0 = last = time.time()
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        idx, res = encode_images(tokenizer, images[start:stop])
        indices[start:stop] = idx.cpu().numpy().astype(np.int16)
        residual[start:stop] = res.cpu().numpy().astype(np.float16)
        if time.time() - last > 60:
            log(f"encoded {stop}/{n} images ({stop / (time.time() - t0):.1f} img/s)")
            last = time.time()
    return {"indices": indices, "residual": residual}


def load_or_encode(tokenizer: HybridTokenizer, data_dir: str, out_path: str, limit: int = 0, log=print,
                   batch: int = 32) -> dict:
    """The encoded data set (from out_path when it matches this tokenizer and data, else encoded now)."""
    from lab.shapes.dataset import load_cache
    images, meta = load_cache(data_dir)
    n = images.shape[0] if limit <= 0 else min(limit, images.shape[0])
    fingerprint = tokenizer_fingerprint(tokenizer)
    if os.path.exists(out_path):
        blob = np.load(out_path)
        if str(blob["fingerprint"]) == fingerprint and int(blob["n"]) == n:
            return {"indices": blob["indices"], "residual": blob["residual"], "captions": list(blob["captions"])}
        log(f"{out_path} was made with another tokenizer or data size: encoding again")
    t0 = time.time()
    log(f"encoding {n} images of {data_dir} with the tokenizer (once)")
    encoded = encode_cache(tokenizer, images[:n], batch=batch, log=log)
    encoded["captions"] = list(meta["captions"][:n])
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = out_path + ".tmp.npz"
    np.savez(tmp, indices=encoded["indices"], residual=encoded["residual"],
             captions=np.array(encoded["captions"]), fingerprint=np.array(fingerprint), n=np.array(n))
    os.replace(tmp, out_path)
    log(f"encoded {n} images in {time.time() - t0:.0f} s → {out_path}")
    return encoded


def load_or_mark_objects(data_dir: str, out_path: str, patch_nums, n: int, log=print, workers: int = 1) -> np.ndarray:
    """object_tokens() of the first n images of the cache, from out_path when it has their shape."""
    width = sum(pn * pn for pn in patch_nums)
    if os.path.exists(out_path):
        objects = np.load(out_path)
        if objects.shape == (n, width):
            return objects
        log(f"{out_path} belongs to other data or scales: marking again")
    t0 = time.time()
    objects = mark_cache(data_dir, patch_nums, n, workers)
    tmp = out_path + ".tmp.npy"
    np.save(tmp, objects)
    os.replace(tmp, out_path)
    log(f"marked the object tokens of {n} images in {time.time() - t0:.0f} s → {out_path}")
    return objects

