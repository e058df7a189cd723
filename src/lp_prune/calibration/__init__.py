"""Layer-by-layer calibration: the schedule, the forward-only Lightning loop, the pruner, observers.

schedule.py    the steps (modes: two-pass, true-sequential, single-pass, scan; resume replays)
module.py      LayerwiseCalibration: each step does its work and returns a StepOutput
pruner.py      LayerPruner: statistics in, pruned Linears out (no Lightning)
results.py     StepOutput, LayerResult, LinearResult, ModuleRecord: what travels to observers
observers.py   callbacks that only read the outputs: recorder, metrics logger, progress bar
checkpoint.py  per-layer progress files and their replay after a crash
loop.py        PruningLoop: the pieces above built from a RunConfig (lp-prune run and lp_prune.prune)
"""
