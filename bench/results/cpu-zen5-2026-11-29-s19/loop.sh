#!/bin/bash
# Goal figures of the current build across the host's bandwidth: each pass runs the GEMV section
# (GLM-130B shapes, paired and same pages) and the pages section on an int8, an int4-row and an
# int4-group model file (read into memory), fp16 every third pass. Run from the repository root
# with the build in build/ and the model files in $MODELS; MINUTES=70 ran 55 passes. Each pass's
# output went to its own file in $OUT, here concatenated into 1-loop-gemv.txt and
# 1-loop-pages.txt (the README names the files).
OUT=${OUT:-/tmp/s19/loop}
MODELS=${MODELS:-/work/hpm}
mkdir -p $OUT
end=$(( $(date +%s) + ${MINUTES:-60} * 60 ))
pass=0
while [ $(date +%s) -lt $end ]; do
  pass=$((pass + 1))
  p=$(printf %02d $pass)
  { echo "=== pass $pass $(date -u +%FT%T)"; ./build/bench-kernels --only=gemv 2>&1 | grep -v "^# decode tiles"; } > $OUT/gemv-$p.txt
  for m in l4v-i8 l6v-i4 l4v-i4g-new $( [ $((pass % 3)) = 1 ] && echo l4v-f16 ); do
    { echo "=== pass $pass $m $(date -u +%FT%T)"; ./build/bench-kernels --only=pages --pages_model=$MODELS/$m.gguf --pages_variants=read --pages_rounds=10 2>&1 | grep -v "^# decode tiles"; } > $OUT/pages-$p-$m.txt
  done
done
echo done > $OUT/DONE
