"""Ground-level file helpers: the floor every other package stands on.

- files: atomic writes with the mode a plain open() gives, never through a symbolic link; JSON in and out
- cache_lock: the cache folder, one process at a time computing an entry, writes that cost a warning when they fail
- run_lock: one run at a time in a run folder
- safetensors_writer: byte-reproducible safetensors files written straight from tensor buffers
- phase_timer: wall time per phase, summary.json's timings_s
- hub: the Hugging Face Hub switched off for a block of work whose data is all local

Nothing here imports lp_prune above errors and runtime, so any package may use it.
"""
