"""Training the generator (library; the command line is lab/train_generator.py).

forward.py            teacher inputs, the RoPE cache and the block-causal training forward;
                      caption_ce (an image's likelihood under a given caption)
loss.py               the losses of one batch (cross-entropy, diffusion, binding margin)
batches.py            the encoded cache in memory, in batches; the held-out batch
model.py              config, initial weights, fp32 residual stream, EMA, optimizer, saving
binding_negatives.py  captions with one binding broken, and the margin loss on them
self_correction.py    teacher inputs with some tokens replaced (the model learns to correct them)

May import: hart, export, lab (never lab's command-line modules).
"""
