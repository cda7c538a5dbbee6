"""The action-conditioned latent world model built on the MoME generation branch."""
