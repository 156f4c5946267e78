/* Registers pair_style equicalc with LAMMPS: plugin load equicalcplugin.so */
#include "lammpsplugin.h"

#include "lammps.h"
#include "pair_equicalc.h"

using namespace LAMMPS_NS;

static Pair *equicalc_creator(LAMMPS *lmp)
{
  return new PairEquiCalc(lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  auto register_plugin = (lammpsplugin_regfunc) regfunc;
  plugin.version = ((LAMMPS *) lmp)->version;
  plugin.style = "pair";
  plugin.name = "equicalc";
  plugin.info = "equicalc: E(3)-equivariant NequIP/Allegro models compiled with equicalc deploy --lammps";
  plugin.author = "equicalc";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &equicalc_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);
}
