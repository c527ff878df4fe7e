"""Input-pipeline images/s at 64 and 256 px; options in stylejax/data/benchmark.py.

python tools/benchmark_data.py [--resolutions 64 256] [--batch 32] [--batches 100]
"""

from stylejax.data.benchmark import main

if __name__ == "__main__":
    main()
