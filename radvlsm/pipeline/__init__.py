"""Batch pipelines behind the commands: input discovery, prompts, resumable per-case outputs.

Imports stage 1, stage 2, fusion and reporting; only the command line imports this.
"""
