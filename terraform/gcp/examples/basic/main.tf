# A Floe cluster in an existing VPC: two to six agents across the region's
# zones, an internal bootstrap load balancer, GCS and Cloud SQL PostgreSQL.
#
#   terraform init
#   terraform apply -var project_id=my-project -var network=default -var subnetwork=default \
#     -var 'client_cidrs=["10.128.0.0/9"]'
#   kcat -b "$(terraform output -raw bootstrap_address)" -L

provider "google" {
  project = var.project_id
  region  = var.region
}

module "floe" {
  source = "../.."

  project_id   = var.project_id
  region       = var.region
  name         = var.name
  network      = var.network
  subnetwork   = var.subnetwork
  client_cidrs = var.client_cidrs
  admin_cidrs  = var.admin_cidrs
  image        = var.image

  min_replicas = 2
  max_replicas = 6

  # A throwaway example: let destroy remove everything and save on the
  # catalog. Production keeps the defaults.
  bucket_force_destroy   = true
  db_deletion_protection = false
  db_availability_type   = "ZONAL"
  db_tier                = "db-custom-1-3840"
}
