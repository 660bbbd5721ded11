"""Writing output files: atomically, and never over one of the command's inputs."""
import contextlib
import os
import shutil
import tempfile
from typing import Iterator, Mapping, Optional


@contextlib.contextmanager
def atomic_write(path: str) -> Iterator[str]:
    """Yield a path to write the whole file to: ``path``'s name in a hidden
    temporary folder beside it. When the block ends without an error the file
    replaces ``path`` (``os.replace``: atomic on one file system); on an error, or
    when the run is killed, the folder is removed or left hidden, and ``path`` keeps
    its previous content. A reader never sees a cut-off file.

    The name is ``path``'s own, so writers that pick the format by the extension
    (matplotlib's ``savefig``) or name companion files after it (ONNX weights over
    2 GB in ``<name>.data``) work unchanged; companions are moved in first, each
    atomically, then the file itself. A symbolic link is written through, as
    ``open`` would.

    Raises:
        FileNotFoundError / IsADirectoryError: naming ``path``, when its directory
            does not exist or it is a directory.
    """
    target = os.path.realpath(path)
    folder, name = os.path.split(target)
    if os.path.isdir(target):
        raise IsADirectoryError(f'{path}: is a directory; give a file name to write')
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'{path}: the directory {folder} does not exist')
    staging = tempfile.mkdtemp(prefix=f'.{name}.', suffix='.tmp', dir=folder)
    try:
        yield os.path.join(staging, name)
        if not os.path.isfile(os.path.join(staging, name)):
            raise FileNotFoundError(f'{path}: nothing was written')
        written = sorted(os.listdir(staging), key=lambda n: n == name)  # the file itself last
        for entry in written:
            os.replace(os.path.join(staging, entry), os.path.join(folder, entry))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (links and hard links included)."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def check_not_an_input(option: str, out: str, inputs: Mapping[str, Optional[str]]) -> None:
    """Refuse an output path that is one of the command's inputs (``inputs``: their
    names, as the usage spells them, to paths; None for one not given).

    Raises:
        ValueError: naming the option, the path and the input it would overwrite.
    """
    for name, path in inputs.items():
        if path is not None and same_file(out, path):
            raise ValueError(f'{option} {out} is the {name} ({path}); writing it would '
                             f'overwrite that input: give another output path')
