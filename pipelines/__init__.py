"""Compositions of voice stages that own tasks: the realtime session and the meeting job.

Imports :mod:`voice`; never imports :mod:`web`.
"""
