"""nrflv: an energy-based Neural Random Field with Latent Variables whose states are sampled by SGHMC.

Layer 0 is the image, layers 1.. are latent state layers. Rooms (one job each):
``architecture`` (layer sizes and connection tables as data, presets), ``nets`` (the quadratic
nets f_i and the feed-forward initialiser), ``energy`` (E(s), per-unit energies, grad_s E),
``sghmc`` (the sampler), ``replay`` (the replay buffer).
"""
