"""Model: the two towers, their losses, the SSL augmentations and the optimizer.

Takes the store's feature layouts (`towers.Layout`, `towers.fuse`); gives `TwoTower` (shared
embedding tables, MLP towers, L2-normalized outputs), the batch softmax and InfoNCE losses
(eq. 6 and 3, `losses`), masking and dropout of a batch's id tensor (`augment`), and the fused
sparse/dense Adagrad (`optim`). Pure functions over tensors; randomness arrives as a generator.
"""
