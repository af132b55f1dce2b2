"""The newsbeam Beam pipeline: raw documents in, clean tagged articles out."""
