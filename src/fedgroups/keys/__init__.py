"""Key functions: example → group."""

from fedgroups.keys.functions import KEYSPEC_HELP, KeyFunction, batched, parse_key, url_hosts
from fedgroups.keys.hashing import partition_of, stable_hash

__all__ = ["KEYSPEC_HELP", "KeyFunction", "batched", "parse_key", "partition_of",
           "stable_hash", "url_hosts"]
