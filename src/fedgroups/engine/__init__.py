"""Build engines: plan (pure), the shared sort/cut/write core, local (embedded default), beam.

The function that users call is ``fedgroups.build`` (defined in ``engine/api.py``); this
package holds the engines behind it and imports nothing on its own.
"""
