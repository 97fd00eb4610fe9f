"""visrec's ML library: plain functions over tables, arrays and torch objects; no Kedro imports."""
