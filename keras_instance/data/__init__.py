"""Datasets as plain records: readers for Flickr8k/30k, MSCOCO, CUHK-PEDES and manifests.

Every reader returns ``list[Record]``; ``validate_records`` refuses broken datasets loudly so
training never starts on missing images or empty captions.
"""
