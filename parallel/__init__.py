"""Spreading one video over several processes (GPUs) with torch.distributed.

* :mod:`.layout`: which ranks share a sequence and which run which guidance branch;
* :mod:`.exchange`: the collectives (Ulysses all-to-all, uneven all-gather, ring pass);
* :mod:`.attention`: self-attention over a sequence split across ranks (Ulysses or ring);
* :mod:`.sequence`: the DiT block runner that runs every block on each rank's slice;
* :mod:`.cfg`: the two guidance branches on two groups of ranks;
* :mod:`.launch`: starting from ``torchrun`` (process group, device, which rank writes).

Every rank runs the same program on the same inputs: only the block stack's
tokens and the guidance branches are split, and both are joined again before
anything else reads them, so the loop, the solvers and the VAE stay unaware.
"""
