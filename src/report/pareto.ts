// The Pareto front of (accuracy, weight memory): the points no other point beats, that is,
// none has higher-or-equal accuracy and lower-or-equal memory with one of them strict.

export interface ParetoPoint {
  memoryMB: number;
  accuracy: number;
}

/** Indices of the front's points, by memory ascending (one index per distinct point). */
export function paretoFront(points: readonly ParetoPoint[]): number[] {
  // memory ascending, accuracy descending: a point is on the front when it beats the best
  // accuracy of every point with less (or equal) memory before it
  const order = points
    .map((_, i) => i)
    .sort((i, j) => points[i].memoryMB - points[j].memoryMB || points[j].accuracy - points[i].accuracy || i - j);
  const front: number[] = [];
  let best = -Infinity;
  for (const i of order) {
    if (points[i].accuracy > best) {
      front.push(i);
      best = points[i].accuracy;
    }
  }
  return front;
}
