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

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Set, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(HERE)

import numpy as np
import onnx
import torch

from hart.model import HartModel
from hart.diffusion import timestep_embedding
from hart.qwen2 import Qwen2Model, Qwen2TextEncoder
from hart.transformer import LEVEL_FREQUENCY_DIM
from export.fp16 import to_fp16
from export.graphs import Graph, build_graphs, fit_preview, sample_inputs
from export.model_budget import qwen2_text_encoder_buffers, requirements
from export.shards import tensor_bytes, save_sharded
from export.writer import (IR_VERSION, OPSET, _name_symbolic_dims, build_tables, sha256_file,
                           write_manifest, write_tables)
from convert import checkpoint as ckpt
from convert.preview_fit import refit_preview
from convert.quantize_weights import QuantizeReport, quantize_model
from convert.weight_map import level_embedding

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


@dataclass
class Configs:
    """The published config files, read and turned into our config."""
    llm: dict
    tokenizer: dict
    qwen: "Qwen2Config"
    config: "HartConfig"
    pad_id: int


def read_configs(hart_dir: str, qwen_dir: str, name: str = "hart-0.7b-1024px",
                 log: Callable[[str], None] = print) -> Configs:
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
    return Configs(llm=llm_cfg, tokenizer=tok_cfg, qwen=qwen_cfg, config=config, pad_id=pad_id)


def load_published(hart_dir: str, qwen_dir: str, name: str = "hart-0.7b-1024px",
                   log: Callable[[str], None] = print) -> Published:
    llm_dir, tok_dir = os.path.join(hart_dir, "llm"), os.path.join(hart_dir, "tokenizer")
    configs = read_configs(hart_dir, qwen_dir, name, log)
    config, qwen_cfg, pad_id = configs.config, configs.qwen, configs.pad_id

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
                shard_bytes: int, external_names=()) -> List[str]:
    """Save with external-data shards and check the written file; return the shard names."""
    shards = save_sharded(proto, os.path.join(out_dir, filename), shard_bytes=shard_bytes, base_dir=weights_dir,
                          external_names=external_names)
    onnx.checker.check_model(os.path.join(out_dir, filename))
    return shards


# ---------------------------------------------------------------------------------------------
# Which tensors derive from the weights


def preview_map(model: HartModel) -> Tuple[torch.Tensor, torch.Tensor]:
    """The preview graph's latent -> RGB map ([3, Cv] weight, [3] bias), fitted against the decoder.

    The graphs are traced with this map (its non-zero values also let weight_dependent find the
    map's tensors); the package then gets the engine's fit instead (preview_fit.py).
    """
    config = model.config
    # Fitted on decoded random latents: 16 images at 64 px, but only 2 at 1024 px (one 1024 px
    # decode is 3.2 TMACs and ~3 GB of activations on the CPU).
    count = max(2, min(16, 16 * 256 * 256 // config.image_size ** 2))
    return fit_preview(model, torch.Generator().manual_seed(0), count=count)


def level_sinusoid(config) -> np.ndarray:
    """[K, 256] float32: the sinusoid of the scale indices the level MLP reads (no weights in it)."""
    levels = torch.arange(config.num_scales, dtype=torch.float32)
    return timestep_embedding(levels, LEVEL_FREQUENCY_DIM).numpy()


def level_table(model: HartModel) -> torch.Tensor:
    """[K, C] level embeddings, summed in the fixed order of weight_map.level_embedding."""
    mlp = model.transformer.lvl_embed.mlp
    params = [t.detach().float().numpy() for t in (mlp[0].weight, mlp[0].bias, mlp[2].weight, mlp[2].bias)]
    return torch.from_numpy(level_embedding(level_sinusoid(model.config), *params))


def package_graphs(published: Published, attention: str, preview, levels) -> List[Graph]:
    """The converted package's graphs. Not the optional encoder (image to image): at 1024 px its
    full-resolution activations are far beyond the requirements the package declares, and its
    nearest-code search folds codebook-derived constants that the weight map does not describe."""
    graphs = build_graphs(published.model, preview, attention, levels)
    return [text_encoder_graph(published)] + [g for g in graphs if g.key != "encoder"]


def _weight_tensors(published: Published) -> List[torch.Tensor]:
    modules = [published.model.transformer, published.model.tokenizer, published.qwen]
    return [t for m in modules for t in m.state_dict().values() if t.is_floating_point()]


@contextlib.contextmanager
def _negated(published: Published):
    """Every weight negated in place (exactly reversible), restored on exit."""
    tensors = _weight_tensors(published)
    with torch.no_grad():
        for t in tensors:
            t.neg_()
    try:
        yield
    finally:
        with torch.no_grad():
            for t in tensors:
                t.neg_()


def _without_data(proto: onnx.ModelProto) -> bytes:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for tensor in copy.graph.initializer:
        for name in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
            tensor.ClearField(name)
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    return copy.SerializeToString()


def weight_dependent(published: Published, graph_key: str, proto: onnx.ModelProto, folder: str,
                     attention: str, preview) -> Set[str]:
    """Names of the initializers of `proto` (traced into `folder`) whose bytes depend on the weights.

    The graph is traced again with every weight (and the preview map) negated: a tensor that
    changes is weight-derived. Everything else of the graph must come out identical, or some
    weight value went into the graph's structure (a folded constant node), which a package
    rebuilt from published weights could not reproduce.
    """
    with tempfile.TemporaryDirectory(prefix=f"hart-probe-{graph_key}-") as probe_dir, _negated(published):
        negative_preview = tuple(-t for t in preview)
        graph = next(g for g in package_graphs(published, attention, negative_preview, level_table(published.model))
                     if g.key == graph_key)
        probe = trace_to_folder(graph, published.model, probe_dir)
        if _without_data(probe) != _without_data(proto):
            raise ValueError(f"graph {graph_key}: its structure depends on the weight values")
        dependent = set()
        for a, b in zip(proto.graph.initializer, probe.graph.initializer):
            if tensor_bytes(a, folder) != tensor_bytes(b, probe_dir):
                dependent.add(a.name)
        return dependent


def _table_dependence(published: Published) -> Set[str]:
    model = published.model
    # build_tables' arrays may share memory with the parameters, which are negated and restored.
    tables = {name: array.copy() for name, array in build_tables(model, level_table(model)).items()}
    with _negated(published):
        negative = {name: array.copy() for name, array in build_tables(model, level_table(model)).items()}
    return {name for name, array in tables.items() if array.tobytes() != negative[name].tobytes()}


# ---------------------------------------------------------------------------------------------
# The package


def convert(hart_dir: str, qwen_dir: str, out_dir: str, fp16: bool = False, text_bits: int = 4,
            block_size: int = 32, shard_mb: float = 100, name: str = "hart-0.7b-1024px",
            log: Callable[[str], None] = print, attention: str = "fused") -> dict:
    if text_bits not in (4, 8, 32):
        raise ValueError(f"--text-encoder-bits must be 4, 8 or 32, got {text_bits}")
    started = time.time()
    published = load_published(hart_dir, qwen_dir, name=name, log=log)
    manifest = write_package(published, out_dir, fp16=fp16, text_bits=text_bits, block_size=block_size,
                             shard_mb=shard_mb, attention=attention, log=log)
    # The TypeScript import writes the engine's fit of the preview map: so does the converter.
    refit_preview(out_dir, log)
    with open(os.path.join(out_dir, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    total = sum(entry["bytes"] for entry in manifest["files"])
    log(f"wrote {out_dir}: {len(manifest['files'])} files, {total / 2**20:,.1f} MB, in {time.time() - started:.0f} s")
    return manifest


class Observer:
    """What convert/skeleton.py watches while a package is written (the converter passes None)."""

    def traced(self, graph: Graph, proto: onnx.ModelProto, folder: str, dependent: Set[str]) -> None:
        pass

    def written(self, graph: Graph, filename: str, proto: onnx.ModelProto, dependent: Set[str],
                report: Optional[QuantizeReport]) -> None:
        pass

    def tables(self, tables: Dict[str, np.ndarray], dependent: Set[str]) -> None:
        pass


def write_package(published: Published, out_dir: str, fp16: bool = False, text_bits: int = 4,
                  block_size: int = 32, shard_mb: float = 100, attention: str = "fused",
                  log: Callable[[str], None] = print, preview=None,
                  observer: Optional[Observer] = None) -> dict:
    """Trace and write every graph, tables.bin, tokenizer.json and manifest.json.

    Every initializer that derives from the weights goes to external data, whatever its size,
    so the graph files hold no weight bytes (docs/model-package.md, "Skeletons and weight maps").
    """
    model, config = published.model, published.model.config
    observer = observer or Observer()
    os.makedirs(out_dir, exist_ok=True)
    shard_bytes = int(shard_mb * 2**20)
    files: List[dict] = []

    def record(path: str, dtype: str) -> None:
        full = os.path.join(out_dir, path)
        files.append({"path": path, "bytes": os.path.getsize(full), "sha256": sha256_file(full), "dtype": dtype})

    graphs_entry: Dict[str, dict] = {}
    preview = preview if preview is not None else preview_map(model)
    levels = level_table(model)
    for graph in package_graphs(published, attention, preview, levels):
        with tempfile.TemporaryDirectory(prefix=f"hart-{graph.file}-") as tmp:
            proto = trace_to_folder(graph, model, tmp)
            dependent = weight_dependent(published, graph.key, proto, tmp, attention, preview)
            observer.traced(graph, proto, tmp, dependent)
            variants = []
            report = None
            if graph.key == "textEncoder" and text_bits != 32:
                report = quantize_model(proto, text_bits, block_size=block_size, base_dir=tmp)
                log(f"  text encoder: {len(report.quantized)} weights to int{text_bits} "
                    f"({report.bytes_before / 2**20:,.0f} MB -> {report.bytes_after / 2**20:,.0f} MB)")
                derived = {new for new, (old, scheme, _) in report.parts.items()
                           if old in dependent and scheme != "zeros"}
                variants.append(("fp32", proto, f"int{text_bits}", f"{graph.file}.onnx", dependent | derived))
            else:
                fp16_proto = _fp16_from_folder(proto, tmp, graph.fp16_io) if fp16 else None
                variants.append(("fp32", proto, "float32", f"{graph.file}.onnx", dependent))
                if fp16_proto is not None:
                    variants.append(("fp16", fp16_proto, "float16", f"{graph.file}.fp16.onnx", dependent))
            entry = {}
            for variant, p, dtype, filename, external in variants:
                shards = write_graph(p, out_dir, filename, tmp, shard_bytes, external)
                observer.written(graph, filename, p, external, report)
                entry[variant] = {"path": filename}
                if shards:
                    entry[variant]["externalData"] = shards
                for path in [filename] + shards:
                    record(path, dtype)
                size = sum(os.path.getsize(os.path.join(out_dir, x)) for x in [filename] + shards)
                log(f"  {filename}: {size:,} bytes in {1 + len(shards)} file(s)")
            graphs_entry[graph.key] = entry

    shutil.copyfile(os.path.join(published.qwen_dir, "tokenizer.json"), os.path.join(out_dir, "tokenizer.json"))
    record("tokenizer.json", "json")
    tables = build_tables(model, levels)
    observer.tables(tables, _table_dependence(published))
    tables_entry = write_tables(tables, out_dir)
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
    return write_manifest(out_dir, config, text_encoder, graphs_entry, tables_entry, files, config.description, needs)
