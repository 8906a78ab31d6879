"""Package discovery; everything else is in pyproject.toml.

setuptools' ``packages.find`` in pyproject.toml cannot also map ``plugins/`` to
``toolchain.plugin_src``, and a hand-written list forgot subpackages (an installed
wheel lacked toolchain.runners and toolchain.bench). Both lists are found here.
"""

from setuptools import find_namespace_packages, find_packages, setup

setup(packages=[*find_packages(include=["toolchain", "toolchain.*"]), "toolchain.plugin_src",
                *(f"toolchain.plugin_src.{name}" for name in find_namespace_packages(where="plugins"))])
