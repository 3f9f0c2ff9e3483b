"""Models by job: the catalogue of names (``catalogue``), getting their files (``fetching``), converting a GGUF
file for transformers (``conversion``), and turning any name, file, directory or hub id into what an engine
loads (``resolve``)."""

from rankwise.llm.models.catalogue import (
                                          KINDS,
                                          ModelSpec,
                                          PackageFile,
                                          cache_dir,
                                          get_spec,
                                          list_models,
)
from rankwise.llm.models.conversion import hf_dir_for_gguf
from rankwise.llm.models.fetching import (
                                          assemble_gguf,
                                          extract_zip,
                                          file_sha256,
                                          hub_snapshot,
                                          is_installed,
                                          local_path,
                                          package_files,
)
from rankwise.llm.models.resolve import ResolvedModel, resolve_model

__all__ = ["KINDS", "ModelSpec", "PackageFile", "ResolvedModel", "assemble_gguf", "cache_dir", "extract_zip",
           "file_sha256", "get_spec", "hf_dir_for_gguf", "hub_snapshot", "is_installed", "list_models",
           "local_path", "package_files", "resolve_model"]
