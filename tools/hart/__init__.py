"""HART, the reference model in PyTorch: what the TypeScript engine is checked against.

config.py        one config per model (tokenizer, transformer, diffusion head, text encoder)
model.py         a whole model (HartModel): build, random weights, checkpoint format
transformer.py   the autoregressive transformer (attention, blocks, heads)
diffusion.py     the residual diffusion head (MLP with AdaLN) and its sampler
vae.py           the hybrid tokenizer (encoder, decoder) around quantizer.py's multi-scale codes
quantizer.py     multi-scale residual quantization (φ convolutions, scale inputs)
rope.py          2-D and text rotary position tables
resample.py      bicubic up / area down between scales as plain matrices
text_encoder.py  the small text encoder of the shapes model; text_vocab.py its word list
qwen2.py         the Qwen2 text encoder of the published model
sampler.py       text → image step for step as docs/model-package.md prescribes
saved.py         reading our own checkpoint and model files
data/            HART's system prompt (the published model's text prefix)

May import: nothing outside hart (torch, numpy only). export, convert and lab import hart.
"""
