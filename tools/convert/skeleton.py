"""A package skeleton: the converter's graph files plus a weight map, made from config files alone.

    tools/py convert.skeleton --hart HART_DIR --qwen QWEN_DIR --out DIR [--fp16]
        [--text-encoder-bits 4|8|32|all ...] [--block-size 32] [--shard-mb 100]
        [--attention fused|plain] [--name NAME]

Only the config files are read (HART_DIR/llm/config.json, HART_DIR/tokenizer/config.json,
QWEN_DIR/config.json, tokenizer.json, tokenizer_config.json); no weights. The model is built
with a distinct float32 bit pattern in every weight element and written by the converter's own
code (convert/converter.py write_package), so the graph files are the converter's, byte for
byte; every external tensor is then explained as an expression over the published tensors
(convert/weight_map.py) and checked by evaluating it. A tensor that no expression explains
stops the run. The format is in docs/model-package.md, "Skeletons and weight maps";
convert/fill.py turns a skeleton and the published weights into the package.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import onnx
import torch

from hart.model import HartModel
from hart.qwen2 import Qwen2Model
from export.shards import tensor_bytes
from convert import checkpoint as ckpt
from convert import converter as conv
from convert.weight_map import Context, Pool, WeightMapError, evaluate, tensor_bytes as expr_bytes

FORMAT = 1
VARIANT_NAMES = {4: "int4", 8: "int8", 32: "fp32"}
ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
               onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8",
               onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64"}

# How convert/checkpoint.py finds and reads each source (the fill and the TypeScript importer
# follow the same rules; docs/model-package.md lists them).
SOURCES = {
    "llm": {"root": "hart", "folder": "llm", "preferred": ["ema_model.bin", "ema_model.safetensors"],
            "warnUnlessPrefix": "ema_model", "what": "llm weights", "prefix": None,
            "dropStored": [ckpt._TRANSFORMER_BUFFERS.pattern], "dropUnprefixed": [], "drop": []},
    "tokenizer": {"root": "hart", "folder": "tokenizer", "preferred": [], "what": "tokenizer weights",
                  "prefix": {"text": "vae.", "when": "any"}, "dropStored": [], "dropUnprefixed": [r"^disc\."],
                  "drop": [r"^vae\.quantize\.ema_vocab_hit_SV$", r"^vae\.(decoder2|post_quant_conv2)\."]},
    "qwen": {"root": "qwen", "folder": "", "preferred": [], "what": "text encoder weights",
             "prefix": {"text": "model.", "when": "each"},
             "dropStored": [r"^lm_head\.weight$", r"rotary_emb\.inv_freq$"], "dropUnprefixed": [], "drop": []},
}


def _variant_list(values: Sequence[str]) -> List[int]:
    out: List[int] = []
    for v in values or ["4"]:
        for bits in ([4, 8, 32] if v == "all" else [int(v)]):
            if bits not in VARIANT_NAMES:
                raise ValueError(f"--text-encoder-bits must be 4, 8, 32 or all, got {v}")
            if bits not in out:
                out.append(bits)
    return out


def unique_model(configs: conv.Configs, qwen_dir: str):
    """Our modules with a distinct value in every weight element, and the pools that name them.

    The text encoder graph reads only `qwen`, the other graphs and tables only `llm`,
    `tokenizer` and the preview map: two pools, whose values may repeat between them.
    """
    config = configs.config
    model = HartModel(config, conv._transformer(config), conv._tokenizer(config), None)
    qwen = Qwen2Model(configs.qwen)
    parts = {"hart": [("llm", "", model.transformer), ("tokenizer", "vae.", model.tokenizer)],
             "qwen": [("qwen", "model.", qwen)]}
    pools = {}
    for group, modules in parts.items():
        entries = [(source, prefix + k, tuple(v.shape))
                   for source, prefix, module in modules for k, v in module.state_dict().items()]
        if group == "hart":
            entries += [("preview", "weight", (3, config.latent_channels)), ("preview", "bias", (3,))]
        pools[group] = Pool(entries)
        for source, prefix, module in modules:
            values = {k: torch.from_numpy(pools[group].value(pools[group].index[(source, prefix + k)]).copy())
                      for k in module.state_dict()}
            module.load_state_dict(values, strict=True)
            del values
    hart = pools["hart"]
    preview = tuple(torch.from_numpy(hart.value(hart.index[("preview", p)]).copy()) for p in ("weight", "bias"))
    published = conv.Published(model=model.eval(), qwen=qwen.eval(), qwen_dir=qwen_dir, pad_id=configs.pad_id)
    return published, pools, preview


def _preview_op(expr):
    """Pool sources named "preview" stand for the fitted preview map."""
    if isinstance(expr, dict):
        if expr.get("source") == "preview":
            return {"op": "preview", "part": expr["key"]}
        return {k: _preview_op(v) for k, v in expr.items()}
    if isinstance(expr, list):
        return [_preview_op(v) for v in expr]
    return expr


class Constants:
    """constants.bin: literal tensors that do not depend on weights, each stored once, 64-byte aligned."""

    def __init__(self):
        self.data = bytearray()
        self.seen: Dict[bytes, int] = {}

    def add(self, data: bytes, dtype: str, shape) -> dict:
        digest = hashlib.sha256(data).digest()
        if digest not in self.seen:
            self.data += b"\0" * (-len(self.data) % 64)
            self.seen[digest] = len(self.data)
            self.data += data
        return {"op": "constant", "offset": self.seen[digest], "length": len(data), "dtype": dtype,
                "shape": list(shape)}


class Collector(conv.Observer):
    """Explains every external tensor of a package as it is written."""

    def __init__(self, published: conv.Published, pools: Dict[str, Pool], preview, constants: Constants,
                 out_dir: str):
        self.pools, self.constants, self.out_dir = pools, constants, out_dir
        self.traced_exprs: Dict[str, Dict[str, dict]] = {}
        self.files: Dict[str, dict] = {}
        model = published.model
        self.levels = conv.level_table(model).numpy()
        sinusoid = conv.level_sinusoid(model.config)
        self.level_expr = {"op": "levelEmbed", "sinusoid": constants.add(sinusoid.tobytes(), "float32", sinusoid.shape),
                           "w1": {"source": "llm", "key": "lvl_embed.mlp.0.weight"},
                           "b1": {"source": "llm", "key": "lvl_embed.mlp.0.bias"},
                           "w2": {"source": "llm", "key": "lvl_embed.mlp.2.weight"},
                           "b2": {"source": "llm", "key": "lvl_embed.mlp.2.bias"}}
        by_source = {"llm": pools["hart"], "tokenizer": pools["hart"], "preview": pools["hart"], "qwen": pools["qwen"]}

        def value(source: str, key: str) -> np.ndarray:
            pool = by_source[source]
            return pool.value(pool.index[(source, key)])

        self.context = Context(value, constants.data, preview=lambda: (value("preview", "weight"),
                                                                      value("preview", "bias")))

    def explain(self, what: str, array: np.ndarray, pool: str = "hart") -> dict:
        expr = self.pools[pool].explain(array)
        if expr is None and array.dtype == np.float32:
            levels = self.levels
            if array.tobytes() == levels.tobytes():
                expr = self.level_expr
            else:
                for row in range(levels.shape[0]):
                    if array.size == levels.shape[1] and array.tobytes() == levels[row].tobytes():
                        expr = {"op": "reshape", "shape": list(array.shape),
                                "x": {"op": "slice", "axis": 0, "start": row, "end": row + 1, "x": self.level_expr}}
                        break
        if expr is None:
            raise WeightMapError(f"{what}: no expression over the published weights explains it")
        return _preview_op(expr)

    def traced(self, graph, proto, folder, dependent):
        exprs = self.traced_exprs.setdefault(graph.key, {})
        for tensor in proto.graph.initializer:
            if tensor.name in dependent:
                array = _array(tensor, tensor_bytes(tensor, folder))
                exprs[tensor.name] = self.explain(f"{graph.file}.onnx: {tensor.name}", array,
                                                  "qwen" if graph.key == "textEncoder" else "hart")

    def written(self, graph, filename, proto, external, report):
        traced = self.traced_exprs[graph.key]
        for tensor in proto.graph.initializer:
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                continue
            info = {e.key: e.value for e in tensor.external_data}
            dtype = ONNX_DTYPES[tensor.data_type]
            shape = list(tensor.dims)
            path = os.path.join(self.out_dir, info["location"])
            with open(path, "rb") as f:
                f.seek(int(info["offset"]))
                data = f.read(int(info["length"]))
            if report is not None and tensor.name in report.parts:
                old, scheme, part = report.parts[tensor.name]
                if scheme == "zeros":
                    expr = {"op": "zeros", "shape": shape, "dtype": dtype}
                elif old in traced:
                    expr = {"op": scheme, "part": part, "x": traced[old]}
                    if scheme == "int4":
                        expr = {"op": scheme, "block": report.block_size, "part": part, "x": traced[old]}
                else:
                    expr = self._literal(data, dtype, shape)
            elif tensor.name in traced:
                expr = traced[tensor.name]
                if dtype == "float16":
                    expr = {"op": "fp16", "x": expr}
            else:
                expr = self._literal(data, dtype, shape)
            got = expr_bytes(expr, self.context, dtype, shape)
            if got != data:
                raise WeightMapError(f"{filename}: {tensor.name}: its expression does not reproduce the written bytes")
            entry = self.files.setdefault(info["location"], {"bytes": 0, "segments": []})
            entry["segments"].append({"offset": int(info["offset"]), "length": int(info["length"]),
                                      "dtype": dtype, "shape": shape, "name": tensor.name, "expr": expr})
            entry["bytes"] = os.path.getsize(path)

    def _literal(self, data: bytes, dtype: str, shape) -> dict:
        if not any(data):
            return {"op": "zeros", "shape": list(shape), "dtype": dtype}
        return self.constants.add(data, dtype, shape)

    def tables(self, tables, dependent):
        segments, offset = [], 0
        for name, array in tables.items():
            array = np.ascontiguousarray(array, dtype="<f4")
            data = array.tobytes()
            if name in dependent:
                expr = self.explain(f"tables.bin: {name}", array)
            else:
                expr = self._literal(data, "float32", array.shape)
            if expr_bytes(expr, self.context, "float32", array.shape) != data:
                raise WeightMapError(f"tables.bin: {name}: its expression does not reproduce the table")
            segments.append({"offset": offset, "length": len(data), "dtype": "float32", "shape": list(array.shape),
                             "name": name, "expr": expr})
            offset += len(data)
        self.files["tables.bin"] = {"bytes": offset, "segments": segments}


def _array(tensor: onnx.TensorProto, data: bytes) -> np.ndarray:
    dtype = {onnx.TensorProto.FLOAT: "<f4", onnx.TensorProto.FLOAT16: "<f2"}.get(tensor.data_type)
    if dtype is None:
        return np.zeros(0, dtype=np.int64)
    return np.frombuffer(data, dtype=dtype).reshape(tuple(tensor.dims))


def _expected_keys(published: conv.Published) -> Dict[str, Dict[str, list]]:
    model = published.model
    parts = {"llm": ("", model.transformer), "tokenizer": ("vae.", model.tokenizer), "qwen": ("model.", published.qwen)}
    return {source: {prefix + k: list(v.shape) for k, v in module.state_dict().items()}
            for source, (prefix, module) in parts.items()}


def _config_checks(configs: conv.Configs, qwen_dir: str) -> List[dict]:
    checks = []
    for field in ckpt.LLM_FIELDS:
        checks.append({"file": "llm/config.json", "field": field, "expected": configs.llm[field]})
    for field in ckpt.TOKENIZER_FIELDS:
        checks.append({"file": "tokenizer/config.json", "field": field, "expected": configs.tokenizer[field]})
    for field, default in (("disable_quant_resi", False), ("default_qresi_counts", 0)):
        checks.append({"file": "tokenizer/config.json", "field": field,
                       "expected": configs.tokenizer.get(field, default), "default": default})
    qwen = ckpt.read_json(os.path.join(qwen_dir, "config.json"))
    for field in ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                  "num_attention_heads", "rms_norm_eps", "rope_theta"):
        checks.append({"file": "config.json", "root": "qwen", "field": field, "expected": qwen[field]})
    heads = qwen["num_attention_heads"]
    for field, default in (("hidden_act", "silu"), ("use_sliding_window", False), ("rope_scaling", None),
                           ("num_key_value_heads", heads), ("max_position_embeddings", 32768)):
        check = {"file": "config.json", "root": "qwen", "field": field, "expected": qwen.get(field, default),
                 "default": default}
        checks.append(check)
    for check in checks:
        check.setdefault("root", "hart")
    return checks


def write_skeleton(hart_dir: str, qwen_dir: str, out_dir: str, fp16: bool = False, bits: Sequence[int] = (4,),
                   block_size: int = 32, shard_mb: float = 100, attention: str = "fused",
                   name: str = "hart-0.7b-1024px", log: Callable[[str], None] = print) -> dict:
    started = time.time()
    configs = conv.read_configs(hart_dir, qwen_dir, name=name, log=log)
    published, pools, preview = unique_model(configs, qwen_dir)
    constants = Constants()
    os.makedirs(out_dir, exist_ok=True)
    shared_files: Optional[Dict[str, dict]] = None
    variants = {}
    graphs_dir = os.path.join(out_dir, "graphs")
    os.makedirs(graphs_dir, exist_ok=True)
    for b in bits:
        vname = VARIANT_NAMES[b]
        with tempfile.TemporaryDirectory(prefix=f"hart-skeleton-{vname}-") as tmp:
            collector = Collector(published, pools, preview, constants, tmp)
            manifest = conv.write_package(published, tmp, fp16=fp16, text_bits=b, block_size=block_size,
                                          shard_mb=shard_mb, attention=attention, log=lambda m: None,
                                          preview=preview, observer=collector)
            own = {p: f for p, f in collector.files.items() if p.startswith("text_encoder.")}
            shared = {p: f for p, f in collector.files.items() if not p.startswith("text_encoder.")}
            if shared_files is None:
                shared_files = shared
            elif json.dumps(shared, sort_keys=True) != json.dumps(shared_files, sort_keys=True):
                raise WeightMapError(f"variant {vname}: the HART graphs' weight map differs between variants")
            os.makedirs(os.path.join(out_dir, vname), exist_ok=True)
            copies = {}
            for graph in manifest["graphs"].values():
                for entry in graph.values():
                    path = entry["path"]
                    if path.startswith("text_encoder."):
                        target = f"{vname}/{path}"
                    else:
                        target = f"graphs/{path}"
                        if os.path.exists(os.path.join(out_dir, target)) and not _same_file(
                                os.path.join(out_dir, target), os.path.join(tmp, path)):
                            raise WeightMapError(f"{path} differs between text encoder variants")
                    shutil.copyfile(os.path.join(tmp, path), os.path.join(out_dir, target))
                    copies[path] = target
            template = dict(manifest)
            template["textEncoder"] = {**manifest["textEncoder"], "prefixIds": None, "padId": None}
            weight_paths = set(collector.files) | {"tokenizer.json"}
            template["files"] = [{**f, "sha256": None if f["path"] in weight_paths else f["sha256"],
                                  "bytes": None if f["path"] == "tokenizer.json" else f["bytes"]}
                                 for f in manifest["files"]]
            with open(os.path.join(out_dir, vname, "manifest.json"), "w") as f:
                json.dump(template, f, indent=2)
                f.write("\n")
            variants[vname] = {"textEncoderBits": b, "manifest": f"{vname}/manifest.json", "copy": copies,
                               "files": own}
            log(f"  variant {vname}: {len(manifest['files'])} package files")

    with open(os.path.join(out_dir, "constants.bin"), "wb") as f:
        f.write(bytes(constants.data))
    with open(conv.SYSTEM_PROMPT, encoding="utf-8") as f:
        system_prompt = f.read()
    config = configs.config
    expected = _expected_keys(published)
    sources = {}
    for source, rules in SOURCES.items():
        sources[source] = {**rules, "files": list(rules["preferred"]) + list(ckpt.WEIGHT_FILES),
                           "keys": expected[source]}
        sources[source].pop("preferred")
    sources["llm"]["checks"] = [{"key": "lvl_1L", "numel": config.context_tokens + sum(p * p for p in config.patch_nums) - 1}]
    weights = {
        "format": FORMAT,
        "options": {"fp16": fp16, "blockSize": block_size, "shardMb": shard_mb, "attention": attention, "name": name},
        "variants": variants,
        "files": shared_files,
        "sources": sources,
        "configs": _config_checks(configs, qwen_dir),
        "text": {"systemPrompt": system_prompt, "window": config.context_tokens,
                 "prefixIds": list(config.text_encoder.prefix_ids), "padId": configs.pad_id,
                 "tokenizer": "tokenizer.json", "tokenizerConfig": "tokenizer_config.json"},
    }
    with open(os.path.join(out_dir, "weights.json"), "w") as f:
        json.dump(weights, f, indent=1)
        f.write("\n")
    log(f"wrote skeleton {out_dir} ({', '.join(variants)}) in {time.time() - started:.0f} s")
    return weights


def _same_file(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/py convert.skeleton", description=__doc__.split("\n")[0])
    parser.add_argument("--hart", required=True, help="folder with llm/config.json and tokenizer/config.json")
    parser.add_argument("--qwen", required=True, help="Qwen2 folder with config.json, tokenizer.json, tokenizer_config.json")
    parser.add_argument("--out", required=True, help="skeleton folder to write")
    parser.add_argument("--fp16", action="store_true", help="also the fp16 graph variants")
    parser.add_argument("--text-encoder-bits", action="append", default=None,
                        help="4, 8, 32 or all; may be given several times (default 4)")
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--shard-mb", type=float, default=100)
    parser.add_argument("--attention", choices=("fused", "plain"), default="fused")
    parser.add_argument("--name", default="hart-0.7b-1024px")
    args = parser.parse_args(argv)
    try:
        write_skeleton(args.hart, args.qwen, args.out, fp16=args.fp16, bits=_variant_list(args.text_encoder_bits),
                       block_size=args.block_size, shard_mb=args.shard_mb, attention=args.attention, name=args.name)
    except (ckpt.CheckpointError, WeightMapError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
