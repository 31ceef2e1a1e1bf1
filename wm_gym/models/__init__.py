"""World-model networks: the global diffusion model, its reward model, the local surrogate, the state probe."""
