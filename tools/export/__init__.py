"""Export: a HART model package (docs/model-package.md) from our PyTorch reference model.

__main__.py     `tools/py export …`: random or trained weights -> package folder
writer.py       traces the graphs to ONNX, writes tables.bin, tokenizer.json and manifest.json
graphs.py       the package's graphs as torch modules (what gets traced)
fp16.py         fp32 -> fp16 ONNX rewrite
shards.py       external-data shards of large graphs
package.py      package validation (format, files, hashes, graph signatures)
golden.py       the sampler's golden cases (tests/fixtures)
model_budget.py sizes, memory and compute of a package from the shapes alone
                (`tools/py export.model_budget` for the published model)

May import: hart. Never convert or lab.
"""
