"""Training the generator (library; the command line is lab/train_generator.py).

binding_negatives.py  captions with one binding broken, and the margin loss on them
self_correction.py    teacher inputs with some tokens replaced (the model learns to correct them)

May import: hart, export, lab.
"""
