# Floe on Google Cloud: stateless agents in a regional managed instance
# group behind an internal passthrough Network Load Balancer, segment
# objects in GCS, the catalog in Cloud SQL PostgreSQL on a private IP.
# Files: storage.tf (GCS), catalog.tf (Cloud SQL, password), iam.tf (the
# agents' service account), network.tf (firewall, load balancer),
# compute.tf (instance template, instance group, autoscaler), kms.tf (the
# service agents' use of a customer-managed key).

locals {
  cluster = coalesce(var.cluster_name, var.name)
  zones   = var.zones != null ? var.zones : data.google_compute_zones.region.names

  labels = merge({
    floe-cluster = local.cluster
    managed-by   = "terraform"
  }, var.labels)

  bucket_name = var.bucket_name != null ? var.bucket_name : "${var.name}-segments-${random_id.bucket[0].hex}"

  # The object store URL the agents open (objstore's gs scheme).
  bucket_url = "gs://${google_storage_bucket.segments.name}"
}

# Every zone of the region, up or not: the instance group's zones can only
# be set when it is created (compute.tf), and a zone that is down at plan
# time is an outage to ride out, not a reason to leave it.
data "google_compute_zones" "region" {
  project = var.project_id
  region  = var.region
}

data "google_compute_network" "this" {
  project = var.project_id
  name    = var.network
}

data "google_compute_subnetwork" "this" {
  project = var.project_id
  region  = var.region
  name    = var.subnetwork
}
