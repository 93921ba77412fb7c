"""Build hook: compiles protos/ into the pipit package before the wheel is built, so the
generated code and descriptor set always match the protos with no manual step."""

import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithProtos(build_py):
    def run(self) -> None:
        protogen = runpy.run_path(str(Path(__file__).parent / "pipit" / "protogen.py"))
        protogen["generate"](Path(__file__).parent)
        super().run()


setup(cmdclass={"build_py": BuildWithProtos})
