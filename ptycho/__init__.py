"""ptycho: a physics-informed neural network for X-ray ptychography (TensorFlow 2 / Keras 3).

Importing this package (or any of its modules) does no work: no model is built, no TF op runs,
no random generator is seeded and no file is touched. See ``ptycho.model`` for the lazy legacy path.
"""

__version__ = "0.1.0"
