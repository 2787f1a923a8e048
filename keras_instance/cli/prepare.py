"""Write a dataset's splits as TFRecord shards for streaming input.

    python -m keras_instance.cli.prepare --dataset=coco --data_dir=data/coco \
        --out=data/coco_shards --num_shards=256
    python -m keras_instance.cli.train --flagfile=configs/coco.flags --shards=data/coco_shards ...

The dataset is read and validated by the same reader training uses, so the shard rows line up
with the training set (the run checks the counts); captions travel in the shards too.
"""
import time

from absl import app, flags

from keras_instance.cli import errors
from keras_instance.cli.flags import FLAGS, config_from_flags, define_config_flags

define_config_flags(("dataset", "data_dir"))
flags.DEFINE_string("out", None, "Folder for the shards and shards.json.")
flags.DEFINE_integer("num_shards", 16, "Shards per split (aim for 100–200 MB per shard).")
flags.DEFINE_list("splits", ["train"], "Splits to write: train, val, test.")


def main(argv):
    del argv

    def run():
        from keras_instance.data import readers
        from keras_instance.data.records import split_records
        from keras_instance.data.shards import write_shards
        if not FLAGS.out:
            raise ValueError("--out is required: the folder to write the shards into")
        config = config_from_flags()
        records = readers.load(config.data)
        for split in FLAGS.splits:
            rows = split_records(records, split)
            start = time.time()
            source = {"dataset": config.data.dataset, "data_dir": config.data.data_dir}
            paths = write_shards(rows, FLAGS.out, split, FLAGS.num_shards, source=source)
            print(f"{split}: {len(rows)} images in {len(paths)} shards under {FLAGS.out} "
                  f"({time.time() - start:.1f} s)")

    errors.run_reporting_user_errors(run)


if __name__ == "__main__":
    app.run(main)
