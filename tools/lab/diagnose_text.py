"""How much the text encoder's output changes when one word of the caption changes.

    tools/py lab.diagnose_text runs/generator/model.pt [more model files]

For each model file it prints the largest relative change of the text encoder's output (over
the caption's positions) when only the object's colour word changes, and when only the
background's colour word changes, plus the size of each block's attention and MLP outputs.
A generator can only draw the object's colour when the first number is clearly above zero.
(An early 88-minute model scored 0.005 for the object word and 1.03 for the background
word: the first block's outputs, ~130–150 in norm against word embeddings of ~1, drowned the
object word. See tools/lab/NOTEBOOK.md.)
"""
import argparse
from typing import Dict, Sequence

import torch

from hart.model import HartModel
from hart.sampler import encode_prompts

BASE = "a red circle on a blue background"
OBJECT_CHANGED = "a green circle on a blue background"
BACKGROUND_CHANGED = "a red circle on a green background"


@torch.no_grad()
def word_sensitivity(model: HartModel, captions: Sequence[str] = (BASE, OBJECT_CHANGED, BACKGROUND_CHANGED)) -> Dict:
    """{'object': max relative change, 'background': ..., 'blocks': [(attn norm, mlp norm), ...]}."""
    te, config = model.text_encoder, model.config
    ids, mask, counts = encode_prompts(config, captions)
    words = slice(len(config.text_encoder.prefix_ids), len(config.text_encoder.prefix_ids) + counts[0])
    # One pass of the encoder itself; hooks read each block's attention and MLP outputs.
    norms: Dict[torch.nn.Module, float] = {}

    def record(module, _inputs, output):
        norms[module] = float(output[0, words].norm(dim=-1).mean())
    hooks = [m.register_forward_hook(record) for block in te.blocks for m in (block.attn, block.ffn)]
    try:
        out = te(torch.from_numpy(ids).long(), torch.from_numpy(mask).long())[:, words]
    finally:
        for hook in hooks:
            hook.remove()
    blocks = [(norms[block.attn], norms[block.ffn]) for block in te.blocks]

    def change(i: int) -> float:
        return float(((out[0] - out[i]).norm(dim=-1) / out[0].norm(dim=-1)).max())
    return {"object": change(1), "background": change(2), "blocks": blocks}


def main(argv=None):
    ap = argparse.ArgumentParser(prog='tools/py lab.diagnose_text', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="model files (HartModel.checkpoint() dicts)")
    a = ap.parse_args(argv)
    for path in a.models:
        r = word_sensitivity(HartModel.from_checkpoint(path))
        blocks = ", ".join(f"({att:.1f}, {mlp:.1f})" for att, mlp in r["blocks"])
        print(f"{path}: object word {r['object']:.3f}, background word {r['background']:.3f}; "
              f"(attention, MLP) output norms per block: {blocks}")


if __name__ == "__main__":
    main()
