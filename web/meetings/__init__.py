"""Recorded audio over HTTP: meeting jobs, transcriptions and the uploads they share."""
