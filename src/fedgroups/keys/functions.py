"""Names from before the KEYSPEC registry, for code that imports them from here.

New code imports from :mod:`fedgroups.keys` (or the file of each key function).
"""

from fedgroups.keys.base import KeyFunction, KeyRowError, decoded_column, normalise_key_array
from fedgroups.keys.field import FieldKey
from fedgroups.keys.hashed import HashKey
from fedgroups.keys.iid import IidKey
from fedgroups.keys.python_function import CallableKey, batched
from fedgroups.keys.registry import KEYSPEC_HELP, KEYSPECS, parse_key
from fedgroups.keys.url_host import UrlHostKey, url_hosts

__all__ = ["KEYSPECS", "KEYSPEC_HELP", "CallableKey", "FieldKey", "HashKey", "IidKey",
           "KeyFunction", "KeyRowError", "UrlHostKey", "batched", "decoded_column",
           "normalise_key_array", "parse_key", "url_hosts"]
