// main.c of the C export: the model-independent command `qcaps IMAGES [N]` that classifies the
// images of an IDX or raw float32 file with qcaps_infer. It checks its argument and its input
// before it classifies anything (N a whole number from 1 to the file's count; an IDX header
// that matches the model and a file that holds every image it declares; raw pixels finite and
// in [0, 1]): a bad one is one line on stderr naming the file or N, exit 2 for the arguments
// and 1 for the file, and nothing on stdout.

export const C_MAIN = String.raw`/* main.c: runs qcaps_infer on images from a file (written by qcapsnets export --format c).
 *   qcaps IMAGES [N]
 * IMAGES: an IDX file of unsigned bytes (e.g. t10k-images-idx3-ubyte; pixels / 255) or a raw
 * file of little-endian float32 images [N][H][W][C]. Prints one line per image:
 * the prediction, then the class lengths (%.9g). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcaps_model.h"

static unsigned long be32(const unsigned char *b) {
  return ((unsigned long)b[0] << 24) | ((unsigned long)b[1] << 16) | ((unsigned long)b[2] << 8) | b[3];
}

/* N: digits only, at least 1 (a value past 2^32 - 1, more than any file holds, reads as that) */
static int parse_count(const char *text, unsigned long *n) {
  unsigned long v = 0, d;
  const char *p;
  for (p = text; *p; p++) {
    if (*p < '0' || *p > '9') return 0;
    d = (unsigned long)(*p - '0');
    v = v > (0xffffffffUL - d) / 10 ? 0xffffffffUL : v * 10 + d;
  }
  *n = v;
  return v > 0;
}

int main(int argc, char **argv) {
  static float image[QCAPS_IMAGE_SIZE];
  static unsigned char bytes[QCAPS_IMAGE_SIZE];
  float lengths[QCAPS_CLASSES];
  unsigned char head[4];
  unsigned long count, n, i, limit = 0;
  long start = 0;
  int idx, k;
  FILE *f;
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s IMAGES [N]  (IDX ubyte images or raw float32 [N][H][W][C])\n",
            argc > 0 ? argv[0] : "qcaps");
    return 2;
  }
  if (argc == 3 && !parse_count(argv[2], &limit)) {
    fprintf(stderr, "N '%s': expected a whole number of images from 1 up (none: all of %s)\n", argv[2], argv[1]);
    return 2;
  }
  f = fopen(argv[1], "rb");
  if (!f) {
    fprintf(stderr, "%s: cannot open it\n", argv[1]);
    return 1;
  }
  idx = fread(head, 1, 4, f) == 4 && head[0] == 0 && head[1] == 0 && head[2] == 0x08;
  if (idx) {
    /* IDX: magic 0 0 8 ndim, then ndim big-endian sizes */
    unsigned char dim[4];
    unsigned long per = 1, size;
    int ndim = head[3], dd;
    if (ndim < 2) {
      fprintf(stderr, "%s: IDX of %d dimensions, expected images [N][H][W] or [N][H][W][C]\n", argv[1], ndim);
      return 1;
    }
    if (fread(dim, 1, 4, f) != 4) return fprintf(stderr, "%s: truncated IDX header\n", argv[1]), 1;
    count = be32(dim);
    for (dd = 1; dd < ndim; dd++) {
      if (fread(dim, 1, 4, f) != 4) return fprintf(stderr, "%s: truncated IDX header\n", argv[1]), 1;
      /* at most QCAPS_IMAGE_SIZE + 1, so that large sizes cannot wrap the product around */
      per = be32(dim) > QCAPS_IMAGE_SIZE || per * be32(dim) > QCAPS_IMAGE_SIZE ? QCAPS_IMAGE_SIZE + 1 : per * be32(dim);
    }
    if (per > QCAPS_IMAGE_SIZE) {
      fprintf(stderr, "%s: images of more than the %d values the model takes\n", argv[1], QCAPS_IMAGE_SIZE);
      return 1;
    }
    if (per != QCAPS_IMAGE_SIZE) {
      fprintf(stderr, "%s: images of %lu values, the model takes %d\n", argv[1], per, QCAPS_IMAGE_SIZE);
      return 1;
    }
    /* every declared image there, before any output */
    start = ftell(f);
    fseek(f, 0, SEEK_END);
    size = ftell(f) > start ? (unsigned long)(ftell(f) - start) / QCAPS_IMAGE_SIZE : 0;
    fseek(f, start, SEEK_SET);
    if (size < count) {
      fprintf(stderr, "%s: truncated: its IDX header declares %lu images, it holds %lu\n", argv[1], count, size);
      return 1;
    }
  } else {
    long size;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size < 0 || size % (long)(sizeof(float) * QCAPS_IMAGE_SIZE) != 0) {
      fprintf(stderr, "%s: not IDX, and its size is not a multiple of %d float32 values\n", argv[1], QCAPS_IMAGE_SIZE);
      return 1;
    }
    count = (unsigned long)size / (sizeof(float) * QCAPS_IMAGE_SIZE);
  }
  if (count == 0) {
    fprintf(stderr, "%s: holds no images\n", argv[1]);
    return 1;
  }
  if (limit > count) {
    fprintf(stderr, "N %s: %s holds only %lu images\n", argv[2], argv[1], count);
    return 2;
  }
  n = limit && limit < count ? limit : count;
  if (!idx) {
    /* raw pixels: every value of the images to classify finite and in [0, 1], before any output
     * (the model's integers are defined for those; NaN compares false and is caught too) */
    for (i = 0; i < n; i++) {
      if (fread(image, sizeof(float), QCAPS_IMAGE_SIZE, f) != QCAPS_IMAGE_SIZE) break;
      for (k = 0; k < QCAPS_IMAGE_SIZE; k++)
        if (!(image[k] >= 0.f && image[k] <= 1.f)) {
          fprintf(stderr, "%s: image %lu, value %d is %g: expected pixels in [0, 1]\n", argv[1], i, k,
                  (double)image[k]);
          return 1;
        }
    }
    fseek(f, start, SEEK_SET);
  }
  for (i = 0; i < n; i++) {
    int pred;
    if (idx) {
      if (fread(bytes, 1, QCAPS_IMAGE_SIZE, f) != QCAPS_IMAGE_SIZE) break;
      for (k = 0; k < QCAPS_IMAGE_SIZE; k++) image[k] = (float)(bytes[k] / 255.0); /* as the tool */
    } else if (fread(image, sizeof(float), QCAPS_IMAGE_SIZE, f) != QCAPS_IMAGE_SIZE) {
      break;
    }
    pred = qcaps_infer(image, lengths);
    printf("%d", pred);
    for (k = 0; k < QCAPS_CLASSES; k++) printf(" %.9g", lengths[k]);
    printf("\n");
  }
  fclose(f);
  if (i < n) {
    fprintf(stderr, "%s: truncated after %lu images\n", argv[1], i);
    return 1;
  }
  return 0;
}
`;
