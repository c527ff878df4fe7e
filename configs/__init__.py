"""Training configs, one module per method (configs/<method>.py, get_config(variant)), read by
`python -m stylejax.main --config=configs/<method>.py[:variant]`; installed with stylejax so
that they import anywhere: `from configs import psp`."""
