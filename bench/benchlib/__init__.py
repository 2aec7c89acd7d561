"""The parts of bench/compare.py, one concern a module: common (paths,
running and timing commands, data sets, reports, scratch directories),
scale (file counts, frame sizes, many entries, one big directory, decoding
threads), extract, s3, incremental, chains and encrypt.
"""
