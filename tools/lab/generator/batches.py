"""The encoded shapes cache in memory, served in batches (EncodedData), and the fixed held-out
batch the training log reports on (held_out_data).
"""
import numpy as np
import torch

from hart.config import HartConfig
from hart.sampler import encode_prompts
from hart.vae import HybridTokenizer
from lab.data import encode_images, object_tokens


class EncodedData:
    """Token maps, residuals and tokenised captions of the encoded shapes cache, in memory, and
    (when given) which tokens cover an object."""

    def __init__(self, config: HartConfig, encoded: dict, device: torch.device = torch.device("cpu")):
        self.device = device
        self.captions = list(encoded["captions"])
        self.indices = torch.from_numpy(encoded["indices"].astype(np.int64))
        self.objects = torch.from_numpy(np.asarray(encoded["objects"])) if "objects" in encoded else None
        self.residual = encoded["residual"]                       # float16 [N, h², Cv], cast per batch
        ids, mask, n_valid = encode_prompts(config, encoded["captions"])
        self.ids = torch.from_numpy(ids.astype(np.int64))
        self.mask = torch.from_numpy(mask.astype(np.int64))
        self.n_valid = np.array(n_valid)
        self.n = self.indices.shape[0]

    def batch(self, rows: np.ndarray) -> dict:
        rows = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        residual = torch.from_numpy(self.residual[rows.numpy()].astype(np.float32))
        out = {"indices": self.indices[rows].to(self.device), "residual": residual.to(self.device),
               "ids": self.ids[rows].to(self.device), "mask": self.mask[rows].to(self.device),
               "n_valid": self.n_valid[rows.numpy()], "captions": [self.captions[r] for r in rows.tolist()]}
        if self.objects is not None:
            out["objects"] = self.objects[rows].to(self.device)
        return out

    def sampling_weights(self, weights: dict):
        """Per-image probabilities that give each caption form `weights[form]` (default 1) times
        its share; None when every form keeps its share."""
        if not weights or all(w == 1.0 for w in weights.values()):
            return None
        from lab.shapes.captions import parse_caption
        p = np.array([weights.get(parse_caption(c).form, 1.0) for c in self.captions])
        return p / p.sum()


def held_out_data(config: HartConfig, tokenizer: HybridTokenizer, n: int) -> dict:
    """A fixed held-out batch (images never in the training stream), encoded like the training
    data, on the tokenizer's device."""
    from lab.shapes.dataset import held_out_example
    examples = [held_out_example(0, i, config.image_size) for i in range(n)]
    images = np.stack([e[0] for e in examples])
    indices, residual = encode_images(tokenizer, images)
    ids, mask, n_valid = encode_prompts(config, [e[1] for e in examples])
    objects = torch.from_numpy(object_tokens(images, config.patch_nums))
    return {"indices": indices, "residual": residual, "ids": torch.from_numpy(ids.astype(np.int64)).to(indices.device),
            "mask": torch.from_numpy(mask.astype(np.int64)).to(indices.device), "n_valid": np.array(n_valid),
            "objects": objects.to(indices.device), "captions": [e[1] for e in examples]}
