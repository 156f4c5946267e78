/* pair_style equicalc: see pair_equicalc.h.

   Each process evaluates the network on its own atoms and its ghost atoms (which must reach
   ghost_cutoff = num_layers x r_max for NequIP, r_max for Allegro, beyond its subdomain), sums the
   energies of its own atoms, and puts minus the gradient of that energy on every atom it sees;
   LAMMPS then adds the ghosts' forces to their owners (newton_pair on) and takes the virial as
   sum over atoms of r x f.

   Only the edges that reach the own atoms' energies are evaluated: an atom's depth is the number
   of r_max hops from the nearest own atom, the model gets the edges whose centre has depth < hops,
   ordered by that depth, and (NequIP) for each layer k > 0 the indices 0 ... E_k - 1 of its edges,
   those whose centre has depth < hops - k. equicalc.lammps.export's
   layer_edge_sets is the same selection in Python. */

#include "pair_equicalc.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

using namespace LAMMPS_NS;

PairEquiCalc::PairEquiCalc(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
}

PairEquiCalc::~PairEquiCalc()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairEquiCalc::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
}

void PairEquiCalc::settings(int narg, char **)
{
  if (narg != 0) error->all(FLERR, "pair_style equicalc takes no arguments (the model is named in pair_coeff)");
}

static std::vector<std::string> split(const std::string &text)
{
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

void PairEquiCalc::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg != 3 + ntypes || std::string(arg[0]) != "*" || std::string(arg[1]) != "*")
    error->all(FLERR, "pair_coeff for equicalc: pair_coeff * * model.pt2 followed by one element per atom type "
               "({} types)", ntypes);
  std::string path = arg[2];
  if (FILE *fp = fopen(path.c_str(), "rb")) {
    fclose(fp);
  } else {
    error->all(FLERR, "pair_style equicalc: no model file {} (make one with: equicalc deploy MODEL --lammps DIR)",
               path);
  }
  std::unordered_map<std::string, std::string> meta;
  try {
    model = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path);
    meta = model->get_metadata();
  } catch (std::exception &e) {
    error->all(FLERR, "pair_style equicalc: cannot load {}: {}", path, e.what());
  }
  if (meta.find("equicalc_format") == meta.end())
    error->all(FLERR, "pair_style equicalc: {} is not a model exported by equicalc deploy --lammps", path);
  if (meta["equicalc_format"] != "2")
    error->all(FLERR, "pair_style equicalc: {} was exported by another version of equicalc (format {}); "
               "export it again with: equicalc deploy MODEL --lammps DIR", path, meta["equicalc_format"]);
  if (meta["device"] != "cpu")
    error->all(FLERR, "pair_style equicalc: {} was exported for device {}; this pair style runs on the CPU", path,
               meta["device"]);
  if (meta["dtype"] != "float64" && meta["dtype"] != "float32")
    error->all(FLERR, "pair_style equicalc: {} has unknown dtype {}", path, meta["dtype"]);
  float64 = meta["dtype"] == "float64";
  std::vector<std::string> species = split(meta["species"]);
  std::vector<std::string> numbers = split(meta["numbers"]);
  r_max = std::stod(meta["r_max"]);
  ghost_cut = std::stod(meta["ghost_cutoff"]);
  hops = std::stoi(meta["hops"]);
  layer_edges = meta["layer_edges"] == "1";
  type_number.assign(ntypes + 1, 0);
  for (int t = 1; t <= ntypes; t++) {
    std::string symbol = arg[2 + t];
    size_t k = 0;
    while (k < species.size() && species[k] != symbol) k++;
    if (k == species.size())
      error->all(FLERR, "pair_coeff for equicalc: element {} of atom type {} is not among the model's species ({})",
                 symbol, t, meta["species"]);
    type_number[t] = std::stol(numbers[k]);
  }
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

void PairEquiCalc::init_style()
{
  if (!model) error->all(FLERR, "pair_style equicalc: no model loaded (pair_coeff * * model.pt2 ...)");
  if (force->newton_pair == 0) error->all(FLERR, "pair_style equicalc needs newton_pair on");
  // ghosts' neighbours give the depths when messages pass more than once
  neighbor->add_request(this, hops > 1 ? NeighConst::REQ_FULL | NeighConst::REQ_GHOST : NeighConst::REQ_FULL);
  // every atom within num_layers x r_max of the subdomain, for as long as the neighbour list is reused
  double needed = ghost_cut + neighbor->skin;
  if (comm->cutghostuser < needed) comm->cutghostuser = needed;
}

double PairEquiCalc::init_one(int, int)
{
  return r_max;
}

void PairEquiCalc::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  if (vflag_atom) error->all(FLERR, "pair_style equicalc does not compute per-atom virials");
  int nlocal = atom->nlocal, nall = atom->nlocal + atom->nghost;
  double **x = atom->x, **f = atom->f;
  int *type = atom->type;
  int n_lists = list->inum + list->gnum;
  double cut2 = r_max * r_max;

  // every pair closer than r_max among own and ghost atoms
  std::vector<int> centre, neighbour;
  for (int ii = 0; ii < n_lists; ii++) {
    int i = list->ilist[ii];
    int *jlist = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; jj++) {
      int j = jlist[jj] & NEIGHMASK;
      double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz < cut2) {
        centre.push_back(i);
        neighbour.push_back(j);
      }
    }
  }
  // hops from the nearest own atom, exact below `hops` after hops - 1 sweeps; two stand-in atoms
  // (2 edges, depth 0) keep the compiled function's sizes at 2 or more on a process that sees few atoms
  int n = nall + 2;
  std::vector<int> depth(n, hops);
  for (int i = 0; i < nlocal; i++) depth[i] = 0;
  depth[nall] = depth[nall + 1] = 0;
  for (int sweep = 1; sweep < hops; sweep++)
    for (size_t e = 0; e < centre.size(); e++)
      depth[centre[e]] = std::min(depth[centre[e]], depth[neighbour[e]] + 1);
  centre.push_back(nall);
  neighbour.push_back(nall + 1);
  centre.push_back(nall + 1);
  neighbour.push_back(nall);
  // the edges of centres nearer than `hops`, nearest first: layer k's are then the first
  // layer_size[k] of them (those whose centre has depth < hops - k)
  std::vector<int64_t> kept, layer_size(hops, 0);
  for (int d = 0; d < hops; d++) {
    for (size_t e = 0; e < centre.size(); e++)
      if (depth[centre[e]] == d) kept.push_back(e);
    layer_size[hops - 1 - d] = kept.size();
  }
  int64_t n_edges = kept.size();
  auto real = float64 ? torch::kFloat64 : torch::kFloat32;
  torch::Tensor numbers = torch::empty({n}, torch::kInt64);
  torch::Tensor positions = torch::empty({n, 3}, torch::kFloat64);
  torch::Tensor local = torch::zeros({n}, torch::kFloat64);
  auto num_a = numbers.accessor<int64_t, 1>();
  auto pos_a = positions.accessor<double, 2>();
  auto loc_a = local.accessor<double, 1>();
  for (int i = 0; i < nall; i++) {
    num_a[i] = type_number[type[i]];
    for (int k = 0; k < 3; k++) pos_a[i][k] = x[i][k];
    loc_a[i] = i < nlocal ? 1.0 : 0.0;
  }
  for (int d = 0; d < 2; d++) {
    num_a[nall + d] = type_number[1];
    pos_a[nall + d][0] = 0.5 * r_max * d;
    pos_a[nall + d][1] = pos_a[nall + d][2] = 0.0;
  }
  torch::Tensor edges = torch::empty({2, n_edges}, torch::kInt64);
  auto e_a = edges.accessor<int64_t, 2>();
  for (int64_t k = 0; k < n_edges; k++) {
    e_a[0][k] = centre[kept[k]];
    e_a[1][k] = neighbour[kept[k]];
  }
  std::vector<torch::Tensor> inputs = {numbers, positions.to(real), edges, local.to(real)};
  for (int layer = 1; layer < (layer_edges ? hops : 0); layer++)  // layer 0 takes all of them
    inputs.push_back(torch::arange(layer_size[layer], torch::kInt64));

  std::vector<torch::Tensor> out;
  try {
    out = model->run(inputs);
  } catch (std::exception &e) {
    error->one(FLERR, "pair_style equicalc: the model failed: {}", e.what());
  }
  torch::Tensor energies = out[0].to(torch::kFloat64).contiguous();
  torch::Tensor forces = out[1].to(torch::kFloat64).contiguous();
  auto en_a = energies.accessor<double, 1>();
  auto fo_a = forces.accessor<double, 2>();
  for (int i = 0; i < nall; i++)
    for (int k = 0; k < 3; k++) f[i][k] += fo_a[i][k];
  for (int i = 0; i < nlocal; i++) {
    if (eflag_global) eng_vdwl += en_a[i];
    if (eflag_atom) eatom[i] += en_a[i];
  }
  if (vflag_fdotr) virial_fdotr_compute();
}
