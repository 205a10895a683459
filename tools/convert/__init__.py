"""Conversion of the published HART checkpoint and its Qwen2 text encoder into a model package.

__main__.py         `tools/py convert …`: the command line
converter.py        loads the published files, traces and writes every graph, the manifest
checkpoint.py       reads the published configs and weights (matched by name and shape)
safetensors.py      a small .safetensors reader and writer
quantize_weights.py int4/int8 block quantization of the text encoder's weights
weight_map.py       weight-map expressions: evaluation, and finding them in a traced model
skeleton.py         `tools/py convert.skeleton …`: graph files + weight map from config files alone
fill.py             `tools/py convert.fill …`: a package from a skeleton and the published weights
tokenize_text.mjs   runs the Qwen2 tokenizer (node) for the system prompt
fake_published.py   small random files laid out like the published ones, for tests
                    (`tools/py convert.fake_published OUT`)

May import: hart, export. Never lab.
"""
