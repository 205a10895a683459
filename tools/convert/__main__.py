"""`tools/py convert --hart HART_DIR --qwen QWEN_DIR --out PACKAGE_DIR [--fp16] [--text-encoder-bits 4|8|32]`:
the published HART checkpoint and its Qwen2 text encoder as a model package (convert/converter.py).
"""

import argparse
import sys
from typing import List, Optional

from hart.transformer import ATTENTION_KINDS
from convert import checkpoint as ckpt
from convert.converter import convert


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/py convert", description="Convert published HART + Qwen2 files into a HART Web model package.")
    parser.add_argument("--hart", required=True, help="folder with llm/ and tokenizer/ (mit-han-lab/hart-0.7b-1024px)")
    parser.add_argument("--qwen", required=True, help="Qwen2 text encoder folder (config.json, weights, tokenizer.json)")
    parser.add_argument("--out", required=True, help="package folder to write")
    parser.add_argument("--fp16", action="store_true", help="also write fp16 graph variants (for shader-f16 GPUs)")
    parser.add_argument("--text-encoder-bits", type=int, default=4, choices=(4, 8, 32),
                        help="text encoder weights: 4 (MatMulNBits, default), 8 (DequantizeLinear) or 32 (float)")
    parser.add_argument("--block-size", type=int, default=32, help="int4 quantization block along K (default 32)")
    parser.add_argument("--shard-mb", type=float, default=100, help="external-data shard size in MB (default 100)")
    parser.add_argument("--name", default="hart-0.7b-1024px", help="package name shown in the app")
    parser.add_argument("--attention", choices=ATTENTION_KINDS, default="fused",
                        help="transformer attention: fused (com.microsoft MultiHeadAttention, flash attention on "
                             "WebGPU; default) or plain (MatMul/Softmax: the 1024 px scores need ~7.7 GB)")
    args = parser.parse_args(argv)
    try:
        convert(args.hart, args.qwen, args.out, fp16=args.fp16, text_bits=args.text_encoder_bits,
                block_size=args.block_size, shard_mb=args.shard_mb, name=args.name, attention=args.attention)
    except ckpt.CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
