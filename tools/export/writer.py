"""Write a HART model as a `hart-web-package` (docs/model-package.md).

export_package(model, out_dir) writes every graph (fp32 and optionally fp16), tables.bin,
tokenizer.json and manifest.json with each file's size and sha256.
"""
import io
import json
import os
import warnings
from typing import Dict, List, Optional

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from hart.config import HartConfig, sampling_json
from .fp16 import to_fp16
from .graphs import Graph, build_graphs, fit_preview, sample_inputs
from hart.model import HartModel
from .model_budget import requirements, small_text_encoder_buffers
from .package import FORMAT, FORMAT_VERSION, sha256_file, validate_package
from hart.resample import area_matrix, bicubic_matrix
from hart.text_vocab import PAD_ID, UNK_ID, build_tokenizer_json

OPSET = 17
IR_VERSION = 8
SHARD_BYTES = 100 * 1024 * 1024   # external-data shards: resumable downloads, far below ORT-web's 2 GB


# ONNX export. --------------------------------------------------------------------------

def export_onnx(graph: Graph, model: HartModel, seed: int = 0) -> onnx.ModelProto:
    """Trace one graph to an in-memory ONNX model (opset 17, IR 8, dynamic axes)."""
    generator = torch.Generator().manual_seed(seed)
    args = tuple(sample_inputs(graph, model, graph.trace_dims, generator))
    buffer = io.BytesIO()
    # The tracer warns about every shape read it records; that is exactly what dynamic axes need.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph.module.eval(), args, buffer, opset_version=OPSET,
            input_names=graph.input_names, output_names=graph.output_names,
            dynamic_axes=graph.dynamic_axes(), do_constant_folding=True, custom_opsets=graph.custom_opsets,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    proto.ir_version = IR_VERSION
    _name_symbolic_dims(proto, graph)
    onnx.checker.check_model(proto)
    return proto


def _name_symbolic_dims(proto: onnx.ModelProto, graph: Graph) -> None:
    """Write the contract's fixed sizes and symbolic names on every graph input and output."""
    shapes = {name: shape for name, _, shape in graph.inputs}
    shapes.update(dict(graph.outputs))
    for value in list(proto.graph.input) + list(proto.graph.output):
        shape = shapes.get(value.name)
        if shape is None:
            continue
        dims = value.type.tensor_type.shape.dim
        for dim, want in zip(dims, shape):
            if isinstance(want, str):
                dim.ClearField("dim_value")
                dim.dim_param = want
            else:
                dim.dim_value = want


def save_onnx(proto: onnx.ModelProto, out_dir: str, filename: str, external: bool) -> List[str]:
    """Save a graph; with external=True its initializers go to `<filename>.data` shards.

    Returns the external-data file names in order (the manifest's `externalData`).
    """
    proto = onnx.ModelProto.FromString(proto.SerializeToString())   # leave the caller's copy intact
    shards: List[str] = []
    if external:
        shard, offset, handle = None, 0, None
        for tensor in proto.graph.initializer:
            data = tensor.raw_data or numpy_helper.to_array(tensor).tobytes()
            if handle is None or (offset and offset + len(data) > SHARD_BYTES):
                if handle:
                    handle.close()
                shard = f"{filename}.data" if not shards else f"{filename}.data{len(shards)}"
                shards.append(shard)
                handle, offset = open(os.path.join(out_dir, shard), "wb"), 0
            pad = (-offset) % 64                               # aligned tensors for zero-copy loaders
            handle.write(b"\0" * pad)
            offset += pad
            handle.write(data)
            _point_to_external(tensor, shard, offset, len(data))
            offset += len(data)
        if handle:
            handle.close()
    with open(os.path.join(out_dir, filename), "wb") as f:
        f.write(proto.SerializeToString())
    return shards


def _point_to_external(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    if not tensor.raw_data:
        tensor.raw_data = numpy_helper.to_array(tensor).tobytes()
    for field in ("float_data", "int32_data", "int64_data", "double_data", "raw_data"):
        tensor.ClearField(field)
    tensor.data_location = onnx.TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


# Tables. -------------------------------------------------------------------------------

@torch.no_grad()
def build_tables(model: HartModel, levels: Optional[torch.Tensor] = None) -> Dict[str, np.ndarray]:
    """The tables of tables.bin; `levels` [K, C] replaces the model's torch-computed level table."""
    c = model.config
    quantizer = model.tokenizer.quantize
    tables = {
        "codebook": quantizer.embedding.weight,
        "phiWeight": torch.stack([conv.weight for conv in quantizer.quant_resi.qresi_ls]),
        "phiBias": torch.stack([conv.bias for conv in quantizer.quant_resi.qresi_ls]),
        "levels": model.transformer.level_table() if levels is None else torch.as_tensor(levels),
    }
    for k, pn in enumerate(c.patch_nums):
        tables[f"upsample.{k}"] = bicubic_matrix(c.latent_side, pn)
        tables[f"downsample.{k}"] = area_matrix(pn, c.latent_side)
    return {name: t.detach().float().contiguous().numpy() for name, t in tables.items()}


def write_tables(tables: Dict[str, np.ndarray], out_dir: str, filename: str = "tables.bin") -> dict:
    entries, offset = {}, 0
    with open(os.path.join(out_dir, filename), "wb") as f:
        for name, array in tables.items():
            data = np.ascontiguousarray(array, dtype="<f4").tobytes()
            entries[name] = {"path": filename, "offset": offset, "shape": list(array.shape), "dtype": "float32"}
            f.write(data)
            offset += len(data)
    return entries


# Manifest. -----------------------------------------------------------------------------

def model_section(config: HartConfig) -> dict:
    return {
        "imageSize": config.image_size,
        "patchNums": list(config.patch_nums),
        "latentChannels": config.latent_channels,
        "vocabSize": config.vocab_size,
        "width": config.width, "depth": config.depth, "heads": config.heads,
        "ropeTheta": config.rope_theta,
        "phiIndex": list(config.phi_indices),
        "diffusion": {"steps": config.diffusion.steps, "trainSteps": config.diffusion.train_steps,
                      "schedule": "cosine", "scale": config.diffusion.scale},
    }


def text_encoder_section(config: HartConfig) -> dict:
    return {
        "contextTokens": config.context_tokens,
        "contextDim": config.context_dim,
        "prefixIds": list(config.text_encoder.prefix_ids),
        "padId": PAD_ID,
        "unkId": UNK_ID,
        "lowercase": True,
    }


def sampling_section(config: HartConfig) -> dict:
    return sampling_json(config.sampling)


def export_package(model: HartModel, out_dir: str, fp16: bool = True, description: Optional[str] = None,
                   seed: int = 0, log=print, attention: str = "plain") -> dict:
    """Write the whole package into out_dir and return the manifest.

    attention: "plain" or "fused" transformer step graph (export/graphs.py TransformerGraph).
    """
    if model.text_encoder is None:
        raise ValueError("packages need a text encoder graph; Qwen2 models are written by the converter")
    config = model.config
    os.makedirs(out_dir, exist_ok=True)
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    preview = fit_preview(model, generator)

    files: List[dict] = []

    def record(path: str, dtype: str) -> None:
        full = os.path.join(out_dir, path)
        files.append({"path": path, "bytes": os.path.getsize(full), "sha256": sha256_file(full), "dtype": dtype})

    graphs_entry = {}
    for graph in build_graphs(model, preview, attention):
        proto = export_onnx(graph, model, seed)
        variants = {"fp32": (proto, "float32", f"{graph.file}.onnx")}
        if fp16:
            variants["fp16"] = (to_fp16(proto, half_io=graph.fp16_io), "float16", f"{graph.file}.fp16.onnx")
        entry = {}
        for variant, (p, dtype, filename) in variants.items():
            shards = save_onnx(p, out_dir, filename, graph.external)
            entry[variant] = {"path": filename}
            if shards:
                entry[variant]["externalData"] = shards
            for path in [filename] + shards:
                record(path, dtype)
            log(f"  {filename}: {sum(os.path.getsize(os.path.join(out_dir, x)) for x in [filename] + shards):,} bytes")
        graphs_entry[graph.key] = entry

    with open(os.path.join(out_dir, "tokenizer.json"), "w") as f:
        json.dump(build_tokenizer_json(config.text_encoder.words), f, indent=1)
    record("tokenizer.json", "json")
    tables = write_tables(build_tables(model), out_dir)
    record("tables.bin", "float32")

    needs = requirements(config, attention, ["fp32", "fp16"] if fp16 else ["fp32"],
                         small_text_encoder_buffers(config, False), small_text_encoder_buffers(config, True))
    manifest = write_manifest(out_dir, config, text_encoder_section(config), graphs_entry, tables, files,
                              description if description is not None else config.description, needs)
    validate_package(out_dir)
    return manifest


def write_manifest(out_dir: str, config, text_encoder: dict, graphs: dict, tables: dict, files: list,
                   description: str, needs: Optional[dict] = None) -> dict:
    """Writes manifest.json (docs/model-package.md §1); the exporter and the converter share it.

    `needs` is the optional `requirements` field (export/model_budget.py requirements).
    """
    manifest = {
        "format": FORMAT,
        "formatVersion": FORMAT_VERSION,
        "name": config.name,
        "description": description,
        "model": model_section(config),
        "textEncoder": text_encoder,
        "sampling": sampling_section(config),
        "examples": list(config.examples),
        "graphs": graphs,
        "tokenizer": "tokenizer.json",
        "tables": tables,
        "files": files,
    }
    if needs is not None:
        manifest["requirements"] = needs
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest
