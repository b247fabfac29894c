"""Key functions: example → group. The KEYSPEC grammar is the registry in ``registry.py``;
each key function is one file (``field.py``, ``url_host.py``, ``dirichlet.py``, …)."""

from fedgroups.keys.base import KeyFunction, KeyRowError, decoded_column, normalise_key_array
from fedgroups.keys.dirichlet import DirichletLabelKey
from fedgroups.keys.field import FieldKey
from fedgroups.keys.hashed import HashKey
from fedgroups.keys.hashing import partition_of, stable_hash
from fedgroups.keys.iid import IidKey
from fedgroups.keys.pathological import LabelShardsKey
from fedgroups.keys.power_law import PowerLawKey
from fedgroups.keys.python_function import CallableKey, batched
from fedgroups.keys.registry import KEYSPEC_HELP, KEYSPECS, parse_key
from fedgroups.keys.super_group import SuperGroupKey, super_group_mapping
from fedgroups.keys.url_host import UrlHostKey, url_hosts

__all__ = ["KEYSPECS", "KEYSPEC_HELP", "CallableKey", "DirichletLabelKey", "FieldKey",
           "HashKey", "IidKey", "KeyFunction", "KeyRowError", "LabelShardsKey", "PowerLawKey",
           "SuperGroupKey", "UrlHostKey", "batched", "decoded_column", "normalise_key_array",
           "parse_key", "partition_of", "stable_hash", "super_group_mapping", "url_hosts"]
