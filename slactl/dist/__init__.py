"""Distributed solves over torch.distributed (issue 6: not implemented yet)."""
