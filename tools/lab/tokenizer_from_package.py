"""The tokenizer at full precision, rebuilt from what the repository commits.

    tools/py lab.tokenizer_from_package checkpoints/hart-shapes-128.pt \
        public/models/hart-shapes runs/tokenizer/tokenizer.pt

checkpoints/hart-shapes-128.pt keeps the tokenizer's encoder, quant_conv and codebook in
float32 but its decoder in float16 (slim_checkpoint.py: the file must stay small). The shipped
package's float32 decoder graph (decoder.onnx) holds the decoder's exact weights, named as in
the model ("tokenizer.decoder.conv_in.weight", ...). This joins the two into a tokenizer file
(train_tokenizer.py's format), so evaluation and further training on a fresh clone decode
exactly as the shipped model does. Each weight taken from the graph must round to the
checkpoint's float16 copy: a package and checkpoint of different models are refused.
"""
import argparse
import os

import numpy as np
import torch

from hart.saved import load_saved
from hart.vae import tokenizer_blob

PREFIX = "tokenizer."
DECODER_MODULES = ("decoder.", "post_quant_conv.")


def graph_weights(path: str) -> dict:
    """name → float32 tensor of every initializer of an ONNX file (its weights)."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(path)
    return {i.name: torch.from_numpy(np.array(numpy_helper.to_array(i), dtype=np.float32))
            for i in model.graph.initializer}


def full_precision_tokenizer(model_file: dict, decoder_weights: dict) -> dict:
    """A tokenizer file: model_file's tokenizer with its decoder weights from decoder_weights."""
    blob = tokenizer_blob(model_file)
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    wanted = [k for k in state if k.startswith(DECODER_MODULES)]
    missing = [k for k in wanted if PREFIX + k not in decoder_weights]
    if missing:
        raise ValueError(f"the decoder graph lacks {len(missing)} weights, e.g. {missing[0]}: not this model's decoder")
    for k in wanted:
        exact = decoder_weights[PREFIX + k]
        if exact.shape != state[k].shape or not torch.equal(exact.half().float(), state[k].half().float()):
            raise ValueError(f"{k} differs between the package and the checkpoint: they are of different models")
        state[k] = exact.clone()
    return {"state_dict": state, "config": blob["config"],
            "source": "encoder, quant_conv, codebook from the model file; decoder from the package's decoder.onnx"}


def main(argv=None):
    ap = argparse.ArgumentParser(prog='tools/py lab.tokenizer_from_package', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="model file, e.g. checkpoints/hart-shapes-128.pt")
    ap.add_argument("package", help="model package folder with decoder.onnx, e.g. public/models/hart-shapes")
    ap.add_argument("out", help="tokenizer file to write")
    a = ap.parse_args(argv)
    try:
        blob = full_precision_tokenizer(load_saved(a.checkpoint), graph_weights(os.path.join(a.package, "decoder.onnx")))
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    torch.save(blob, a.out)
    print(f"wrote {a.out}: {sum(v.numel() for v in blob['state_dict'].values()):,} tokenizer weights, "
          f"the decoder's in float32 from {a.package}")


if __name__ == "__main__":
    main()
