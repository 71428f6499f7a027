"""fashion-clip: fine-tune OpenCLIP dual encoders on fashion catalogues with Lightning + Hydra."""

__version__ = "0.1.0"
