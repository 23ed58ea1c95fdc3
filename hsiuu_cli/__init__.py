"""hsiuu: super-resolution, unmixing and fusion of hyperspectral cubes, from the shell or from Python."""

__version__ = "0.1.0"
