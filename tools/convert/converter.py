"""Convert the published HART checkpoint and its Qwen2 text encoder into a model package.

    tools/py convert --hart HART_DIR --qwen QWEN_DIR --out PACKAGE_DIR [--fp16] [--text-encoder-bits 4|8|32]

HART_DIR is a local copy of `mit-han-lab/hart-0.7b-1024px` (with `llm/` and `tokenizer/`),
QWEN_DIR one of the Qwen2 text encoder (`config.json`, weights, `tokenizer.json`,
`tokenizer_config.json`). The package (docs/model-package.md) gets every graph in fp32 (and
fp16 with --fp16), the text encoder with int4 (default) or int8 weights, weights in external
data shards of about --shard-mb MB, tables.bin, the Qwen2 tokenizer.json and manifest.json.

Every number comes from the config files; every weight is matched by name and shape, and
anything unexpected stops the conversion with a message naming it (convert/checkpoint.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(HERE)

import onnx
import torch

from hart.model import HartModel
from hart.qwen2 import Qwen2Model, Qwen2TextEncoder
from export.fp16 import to_fp16
from export.graphs import Graph, build_graphs, fit_preview, sample_inputs
from export.model_budget import qwen2_text_encoder_buffers, requirements
from export.shards import save_sharded
from export.writer import (IR_VERSION, OPSET, _name_symbolic_dims, build_tables, sha256_file,
                           write_manifest, write_tables)
from convert import checkpoint as ckpt
from convert.quantize_weights import quantize_model

SYSTEM_PROMPT = os.path.join(TOOLS, "hart", "data", "hart_system_prompt.txt")
TOKENIZE_SCRIPT = os.path.join(HERE, "tokenize_text.mjs")


@dataclass
class Published:
    """The published files, read, checked and loaded into our modules."""
    model: HartModel            # transformer (+ diffusion head) and tokenizer, EMA weights
    qwen: Qwen2Model
    qwen_dir: str
    pad_id: int


# ---------------------------------------------------------------------------------------------
# Reading the published folders


def tokenize(text: str, tokenizer_json: str, tokenizer_config: Optional[str] = None) -> List[int]:
    """Ids of `text` with the user's tokenizer.json, through the same JS library as the app."""
    args = ["node", TOKENIZE_SCRIPT, tokenizer_json] + ([tokenizer_config] if tokenizer_config else [])
    result = subprocess.run(args, input=text.encode("utf-8"), capture_output=True, check=False)
    if result.returncode != 0:
        raise ckpt.CheckpointError(f"tokenizing with {tokenizer_json} failed: {result.stderr.decode()[-2000:]}")
    return [int(i) for i in json.loads(result.stdout)["ids"]]


def system_prompt_ids(qwen_dir: str, max_tokens: int) -> List[int]:
    """HART's LLM system prompt (docs/hart.md §2), tokenized like HART does: no padding,
    truncated to the text window (`max_length=T, truncation=True` in its tokenize_fn).

    Only tokenizer.json is used, as the engine does for prompts (the package ships no
    tokenizer_config.json), so prefix and prompt are split by the same rules.
    """
    with open(SYSTEM_PROMPT, encoding="utf-8") as f:
        text = f.read()
    return tokenize(text, os.path.join(qwen_dir, "tokenizer.json"))[:max_tokens]


def load_published(hart_dir: str, qwen_dir: str, name: str = "hart-0.7b-1024px",
                   log: Callable[[str], None] = print) -> Published:
    llm_dir, tok_dir = os.path.join(hart_dir, "llm"), os.path.join(hart_dir, "tokenizer")
    llm_cfg = ckpt.read_json(os.path.join(llm_dir, "config.json"))
    tok_cfg = ckpt.read_json(os.path.join(tok_dir, "config.json"))
    qwen_cfg = ckpt.qwen2_config(qwen_dir)
    if "context_token" not in llm_cfg:
        raise ckpt.CheckpointError("llm/config.json lacks context_token")
    prefix = system_prompt_ids(qwen_dir, int(llm_cfg["context_token"]))
    pad_id = ckpt.pad_token_id(qwen_dir)
    config = ckpt.hart_config(llm_cfg, tok_cfg, ckpt.text_encoder_config(qwen_cfg, prefix), name=name)
    log(f"config: {config.depth} blocks, width {config.width}, {config.heads} heads, "
        f"{config.num_scales} scales up to {config.latent_side}x{config.latent_side}, "
        f"text window {config.context_tokens} after a {len(prefix)}-token system prompt")

    model = HartModel(config, _transformer(config), _tokenizer(config), None)
    # Inference uses the EMA weights (docs/hart.md §1); the folder's main weights are training weights.
    llm_path = ckpt.find_weights(llm_dir, preferred=("ema_model.bin", "ema_model.safetensors"))
    if not os.path.basename(llm_path).startswith("ema_model"):
        log(f"warning: no ema_model.bin in {llm_dir}; using {os.path.basename(llm_path)}")
    log(f"reading {llm_path}")
    ckpt.load_checked(model.transformer, ckpt.transformer_state(ckpt.read_state_dict(llm_path), config),
                      f"llm weights ({os.path.basename(llm_path)})")
    tok_path = ckpt.find_weights(tok_dir)
    log(f"reading {tok_path}")
    ckpt.load_checked(model.tokenizer, ckpt.tokenizer_state(ckpt.read_state_dict(tok_path)),
                      f"tokenizer weights ({os.path.basename(tok_path)})")
    qwen = Qwen2Model(qwen_cfg)
    qwen_path = ckpt.find_weights(qwen_dir)
    log(f"reading {qwen_path}")
    ckpt.load_checked(qwen, ckpt.qwen2_state(ckpt.read_state_dict(qwen_path)),
                      f"text encoder weights ({os.path.basename(qwen_path)})")
    return Published(model=model.eval(), qwen=qwen.eval(), qwen_dir=qwen_dir, pad_id=pad_id)


def _transformer(config):
    from hart.transformer import HartTransformer
    return HartTransformer(config)


def _tokenizer(config):
    from hart.vae import HybridTokenizer
    return HybridTokenizer(config.vae, config.quantizer)


# ---------------------------------------------------------------------------------------------
# Writing graphs that may exceed protobuf's 2 GB


def text_encoder_graph(published: Published) -> Graph:
    c = published.model.config
    return Graph("textEncoder", "text_encoder", Qwen2TextEncoder(published.qwen),
                 [("input_ids", "int32", ("B", "S")), ("attention_mask", "int32", ("B", "S"))],
                 [("hidden", ("B", "S", c.context_dim))], trace_dims={"B": 2, "S": 8})


def trace_to_folder(graph: Graph, model: HartModel, folder: str, seed: int = 0) -> onnx.ModelProto:
    """torch.onnx.export to a file in `folder` and load it back without its weights' bytes.

    torch writes a graph over 2 GB with one external file per tensor; either way the returned
    proto holds small tensors inline and big ones as references into `folder`.
    """
    generator = torch.Generator().manual_seed(seed)
    args = tuple(sample_inputs(graph, model, graph.trace_dims, generator))
    path = os.path.join(folder, graph.file + ".onnx")
    with torch.no_grad():
        torch.onnx.export(graph.module.eval(), args, path, opset_version=OPSET,
                          input_names=graph.input_names, output_names=graph.output_names,
                          dynamic_axes=graph.dynamic_axes(), do_constant_folding=True,
                          custom_opsets=graph.custom_opsets)
    proto = onnx.load(path, load_external_data=False)
    proto.ir_version = IR_VERSION
    _name_symbolic_dims(proto, graph)
    return proto


def _fp16_from_folder(proto: onnx.ModelProto, folder: str, half_io=()) -> onnx.ModelProto:
    # to_fp16 reads each weight with numpy_helper.to_array, which resolves external data
    # relative to the working directory: run it from the folder holding the weights.
    previous = os.getcwd()
    os.chdir(folder)
    try:
        return to_fp16(proto, half_io=half_io)
    finally:
        os.chdir(previous)


def write_graph(proto: onnx.ModelProto, out_dir: str, filename: str, weights_dir: str,
                shard_bytes: int) -> List[str]:
    """Save with external-data shards and check the written file; return the shard names."""
    shards = save_sharded(proto, os.path.join(out_dir, filename), shard_bytes=shard_bytes, base_dir=weights_dir)
    onnx.checker.check_model(os.path.join(out_dir, filename))
    return shards


# ---------------------------------------------------------------------------------------------
# The package


def convert(hart_dir: str, qwen_dir: str, out_dir: str, fp16: bool = False, text_bits: int = 4,
            block_size: int = 32, shard_mb: float = 100, name: str = "hart-0.7b-1024px",
            log: Callable[[str], None] = print, attention: str = "fused") -> dict:
    if text_bits not in (4, 8, 32):
        raise ValueError(f"--text-encoder-bits must be 4, 8 or 32, got {text_bits}")
    started = time.time()
    published = load_published(hart_dir, qwen_dir, name=name, log=log)
    model, config = published.model, published.model.config
    os.makedirs(out_dir, exist_ok=True)
    shard_bytes = int(shard_mb * 2**20)
    files: List[dict] = []

    def record(path: str, dtype: str) -> None:
        full = os.path.join(out_dir, path)
        files.append({"path": path, "bytes": os.path.getsize(full), "sha256": sha256_file(full), "dtype": dtype})

    graphs_entry: Dict[str, dict] = {}
    # The preview map is fitted on decoded random latents: 16 images at 64 px, but only 2 at
    # 1024 px (one 1024 px decode is 3.2 TMACs and ~3 GB of activations on the CPU).
    count = max(2, min(16, 16 * 256 * 256 // config.image_size ** 2))
    preview = fit_preview(model, torch.Generator().manual_seed(0), count=count)
    graphs = [text_encoder_graph(published)] + build_graphs(model, preview, attention)
    for graph in graphs:
        with tempfile.TemporaryDirectory(prefix=f"hart-{graph.file}-") as tmp:
            proto = trace_to_folder(graph, model, tmp)
            variants = []
            if graph.key == "textEncoder" and text_bits != 32:
                report = quantize_model(proto, text_bits, block_size=block_size, base_dir=tmp)
                log(f"  text encoder: {len(report.quantized)} weights to int{text_bits} "
                    f"({report.bytes_before / 2**20:,.0f} MB -> {report.bytes_after / 2**20:,.0f} MB)")
                variants.append(("fp32", proto, f"int{text_bits}", f"{graph.file}.onnx"))
            else:
                fp16_proto = _fp16_from_folder(proto, tmp, graph.fp16_io) if fp16 else None
                variants.append(("fp32", proto, "float32", f"{graph.file}.onnx"))
                if fp16_proto is not None:
                    variants.append(("fp16", fp16_proto, "float16", f"{graph.file}.fp16.onnx"))
            entry = {}
            for variant, p, dtype, filename in variants:
                shards = write_graph(p, out_dir, filename, tmp, shard_bytes)
                entry[variant] = {"path": filename}
                if shards:
                    entry[variant]["externalData"] = shards
                for path in [filename] + shards:
                    record(path, dtype)
                size = sum(os.path.getsize(os.path.join(out_dir, x)) for x in [filename] + shards)
                log(f"  {filename}: {size:,} bytes in {1 + len(shards)} file(s)")
            graphs_entry[graph.key] = entry

    shutil.copyfile(os.path.join(qwen_dir, "tokenizer.json"), os.path.join(out_dir, "tokenizer.json"))
    record("tokenizer.json", "json")
    tables = write_tables(build_tables(model), out_dir)
    record("tables.bin", "float32")

    text_encoder = {
        "contextTokens": config.context_tokens,
        "contextDim": config.context_dim,
        "prefixIds": list(config.text_encoder.prefix_ids),
        "padId": published.pad_id,
        "unkId": None,          # byte-level BPE: every text has a tokenization
        "lowercase": False,
    }
    qwen_buffers = qwen2_text_encoder_buffers(published.qwen.config,
                                              len(config.text_encoder.prefix_ids) + config.context_tokens, text_bits)
    needs = requirements(config, attention, ["fp32", "fp16"] if fp16 else ["fp32"], qwen_buffers, qwen_buffers)
    manifest = write_manifest(out_dir, config, text_encoder, graphs_entry, tables, files, config.description, needs)
    total = sum(entry["bytes"] for entry in files)
    log(f"wrote {out_dir}: {len(files)} files, {total / 2**20:,.1f} MB, in {time.time() - started:.0f} s")
    return manifest

