"""Leaf utilities every package of sepconv uses; nothing here imports the rest of sepconv.

- :mod:`sepconv.utils.validation`: checks of user input, each raising ``ValueError`` from
  :func:`~sepconv.utils.validation.invalid` (argument, what was expected, what was received).
- :mod:`sepconv.utils.files`: atomic writes (:func:`~sepconv.utils.files.write_atomic`) that
  replace only regular files, and output paths checked writable before the work
  (:func:`~sepconv.utils.files.check_writable`).
- :mod:`sepconv.utils.locks`: folders one process writes at a time
  (:func:`~sepconv.utils.locks.locked_folder`).
- :mod:`sepconv.utils.capture`: the module calls one forward pass really makes.
- :mod:`sepconv.utils.devices`: the device a user asks for, checked to exist.
- :mod:`sepconv.utils.seeding`: seeds derived from (seed, epoch, step, ...).
- :mod:`sepconv.utils.version`: ``__version__``.
"""
