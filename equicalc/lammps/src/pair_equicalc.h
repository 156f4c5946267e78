/* pair_style equicalc: an equicalc model (NequIP or Allegro), compiled by `equicalc deploy --lammps`,
   evaluated on each process's own and ghost atoms. */
#ifndef EQUICALC_PAIR_EQUICALC_H
#define EQUICALC_PAIR_EQUICALC_H

#include "pair.h"

#include <memory>
#include <vector>

namespace torch::inductor {
class AOTIModelPackageLoader;
}

namespace LAMMPS_NS {

class PairEquiCalc : public Pair {
 public:
  PairEquiCalc(class LAMMPS *);
  ~PairEquiCalc() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

 private:
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> model;
  std::vector<long> type_number;      // atomic number of each LAMMPS type (1-based)
  double r_max = 0.0, ghost_cut = 0.0;
  int hops = 1;                       // message-passing hops: an atom matters up to hops - 1 hops from a local one
  bool layer_edges = false;           // the package takes the edges of each layer after the first (NequIP)
  bool float64 = true;
  void allocate();
};

}    // namespace LAMMPS_NS

#endif
