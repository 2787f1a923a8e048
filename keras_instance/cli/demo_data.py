"""Generate the embedded demo dataset: `python -m keras_instance.cli.demo_data --out data/demo`."""
from absl import app, flags

from keras_instance.data.demo import generate_demo

flags.DEFINE_string("out", "data/demo", "Folder for images/ and manifest.jsonl.")
flags.DEFINE_integer("num_train", 4000, "Training pictures.")
flags.DEFINE_integer("num_val", 200, "Validation pictures.")
flags.DEFINE_integer("num_test", 1000, "Test pictures (1,000 as in the Flickr protocol).")
flags.DEFINE_integer("image_size", 64, "Picture side in pixels.")
flags.DEFINE_integer("seed", 0, "Scene generator seed.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    path = generate_demo(FLAGS.out, FLAGS.num_train, FLAGS.num_val, FLAGS.num_test,
                         FLAGS.image_size, FLAGS.seed)
    print(f"demo data: {path}")


if __name__ == "__main__":
    app.run(main)
